"""Shared names and small senders for the stand-in tests."""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable

import stripe
from stripe.params.billing import MeterEventCreateParams
from stripe.params.v2.billing import MeterEventStreamCreateParamsEvent

from sensor_billing.devtools.stripe_standin import DEFAULT_API_KEY

API_KEY = DEFAULT_API_KEY
CLIENT_TIMEOUT_SECONDS = 0.5
EVENT_NAME = "sensor_readings"
DAY = 24 * 3600

MeterFactory = Callable[..., Awaitable[stripe.billing.Meter]]
CustomerFactory = Callable[[], Awaitable[str]]
StreamClientFactory = Callable[[], Awaitable[stripe.StripeClient]]

_counter = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}_{next(_counter)}_{time.monotonic_ns()}"


def event_params(
    *,
    customer: str = "cus_any",
    value: str = "1",
    event_name: str = EVENT_NAME,
    identifier: str | None = None,
    timestamp: int | None = None,
) -> MeterEventCreateParams:
    params: MeterEventCreateParams = {
        "event_name": event_name,
        "payload": {"stripe_customer_id": customer, "value": value},
    }
    if identifier is not None:
        params["identifier"] = identifier
    if timestamp is not None:
        params["timestamp"] = timestamp
    return params


async def send_event(
    client: stripe.StripeClient,
    *,
    idempotency_key: str | None = None,
    customer: str = "cus_any",
    value: str = "1",
    event_name: str = EVENT_NAME,
    identifier: str | None = None,
    timestamp: int | None = None,
) -> stripe.billing.MeterEvent:
    params = event_params(
        customer=customer,
        value=value,
        event_name=event_name,
        identifier=identifier,
        timestamp=timestamp,
    )
    return await client.v1.billing.meter_events.create_async(
        params, {"idempotency_key": idempotency_key or unique("key")}
    )


def stream_event(
    *,
    customer: str = "cus_any",
    value: str = "1",
    event_name: str = EVENT_NAME,
    identifier: str | None = None,
    timestamp: str | None = None,
) -> MeterEventStreamCreateParamsEvent:
    event: MeterEventStreamCreateParamsEvent = {
        "event_name": event_name,
        "payload": {"stripe_customer_id": customer, "value": value},
        "identifier": identifier or unique("evt"),
    }
    if timestamp is not None:
        event["timestamp"] = timestamp
    return event


def header_of(error: stripe.StripeError, name: str) -> str | None:
    """A header of the answer behind an SDK exception, looked up case-insensitively."""
    headers = error.headers or {}
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)
