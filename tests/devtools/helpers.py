"""Shared names and small senders for the stand-in tests."""

from __future__ import annotations

import asyncio
import decimal
import itertools
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
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


@dataclass
class Receiver:
    """A webhook endpoint on a real port: records each delivery, answers `statuses` in turn."""

    url: str
    statuses: list[int] = field(default_factory=list)
    deliveries: list[tuple[bytes, str]] = field(default_factory=list)

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self.deliveries) < count:
            assert loop.time() < deadline, f"{len(self.deliveries)} deliveries, not {count}"
            await asyncio.sleep(0.02)

    def events(self) -> list[dict[str, Any]]:
        """The delivered bodies, parsed, in arrival order."""
        return [json.loads(body) for body, _ in self.deliveries]


@contextmanager
def receiving() -> Iterator[Receiver]:
    received = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.deliveries.append((body, self.headers["Stripe-Signature"]))
            status = received.statuses.pop(0) if received.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


WEBHOOK_SECRET = "whsec_standin_billing_tests"
SUCCESS_URL = "https://app.example/billing/done?session={CHECKOUT_SESSION_ID}"


@dataclass(frozen=True)
class BillingCatalog:
    """A meter, and the product's two monthly prices: metered (per reading) and licensed."""

    meter: str
    metered_price: str
    licensed_price: str


async def create_billing_catalog(
    client: stripe.StripeClient,
    *,
    reading_price: str = "0.5",
    formula: str = "sum",
    event_name: str = "temperature_readings",
) -> BillingCatalog:
    meter = await client.v1.billing.meters.create_async(
        {
            "display_name": event_name,
            "event_name": event_name,
            "default_aggregation": {"formula": formula},
        }
    )
    product = await client.v1.products.create_async({"name": "Temperature monitoring"})
    metered = await client.v1.prices.create_async(
        {
            "currency": "eur",
            "product": product.id,
            "unit_amount_decimal": decimal.Decimal(reading_price),
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )
    licensed = await client.v1.prices.create_async(
        {
            "currency": "eur",
            "product": product.id,
            "unit_amount": 500,
            "recurring": {"interval": "month"},
        }
    )
    return BillingCatalog(meter.id, metered.id, licensed.id)


async def open_session(
    client: stripe.StripeClient, catalog: BillingCatalog, **params: Any
) -> stripe.checkout.Session:
    """A subscription-mode session for the metered price; `params` override or add fields."""
    body: dict[str, Any] = {
        "mode": "subscription",
        "line_items": [{"price": catalog.metered_price}],
        "success_url": SUCCESS_URL,
        **params,
    }
    return await client.v1.checkout.sessions.create_async(body)  # type: ignore[arg-type]


async def subscribe(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    **params: Any,
) -> dict[str, Any]:
    """A new customer with an active subscription to the metered price (through a completed
    Checkout Session); answers the completion (`subscription`, `events`, `deliveries`)."""
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})
    session = await open_session(client, catalog, customer=customer.id, **params)
    answer = await control.post(f"/checkout_sessions/{session.id}/complete", json={})
    assert answer.status_code == 200, answer.text
    completion: dict[str, Any] = answer.json()
    return completion


async def control_post(
    control: httpx.AsyncClient, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    answer = await control.post(path, json=body or {})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result
