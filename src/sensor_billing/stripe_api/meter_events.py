"""Sending meter events (v1, one per call) and Stripe's answers mapped to ours."""

from __future__ import annotations

import re
from dataclasses import dataclass

import stripe

from sensor_billing.errors import StripeRefusedError, StripeUnavailableError

# Stripe's answer to a second event with the same identifier within its 24 h window
# (docs: recording-usage-api). It means the event is already recorded: a success for us.
DUPLICATE_IDENTIFIER_MESSAGE = "An event already exists with identifier"
# Every meter event call's idempotency key is this prefix and the event's identifier, and,
# once Stripe has answered a 5xx for it, RETRY_KEY_MARK and a number (see `idempotency_key`).
IDEMPOTENCY_KEY_PREFIX = "meter-event-"
RETRY_KEY_MARK = ".retry"
METER_EVENTS_PATH = "/v1/billing/meter_events"
_RETRY_SUFFIX = re.compile(re.escape(RETRY_KEY_MARK) + r"\d+$")


@dataclass(frozen=True, slots=True)
class MeterEvent:
    event_name: str
    customer_id: str
    value: int
    identifier: str
    timestamp: int
    # The ledger row's `key_generation`: which idempotency key the call uses.
    key_generation: int = 0


def idempotency_key(identifier: str, generation: int = 0) -> str:
    """The event's key for as long as no 5xx answer came back: a retry after a timeout, a cut
    connection, a 429 or a 409 (none of which Stripe keeps under the key, or whose answer is
    still to come) reuses it, and Stripe replays what it did. Stripe does keep a 500 under its
    key and would answer every retry with that same 500 for 24 h (STRIPE.md): after one, the
    row's key generation moves on and the next call gets a fresh key. The identifier, which
    never changes, is what keeps that call from recording the event twice."""
    key = f"{IDEMPOTENCY_KEY_PREFIX}{identifier}"
    return key if generation == 0 else f"{key}{RETRY_KEY_MARK}{generation}"


def identifier_of_idempotency_key(key: str) -> str:
    """The identifier inside one of our keys (any other string is returned as it is)."""
    if not key.startswith(IDEMPOTENCY_KEY_PREFIX):
        return key
    return _RETRY_SUFFIX.sub("", key.removeprefix(IDEMPOTENCY_KEY_PREFIX))


def is_duplicate_identifier(error: stripe.StripeError) -> bool:
    return isinstance(error, stripe.InvalidRequestError) and (
        DUPLICATE_IDENTIFIER_MESSAGE in (error.user_message or str(error))
    )


def map_stripe_error(error: stripe.StripeError) -> StripeUnavailableError | StripeRefusedError:
    """Retryable: 429, 409, 5xx, connection errors and timeouts; the rest is permanent
    (docs: error-low-level)."""
    status = error.http_status
    said = str(error.user_message or error)
    message = f"{type(error).__name__}: {said}"
    if isinstance(error, stripe.RateLimitError | stripe.APIConnectionError):
        return StripeUnavailableError(message, status, stripe_message=said)
    if isinstance(error, stripe.APIError) and (status is None or status == 409 or status >= 500):
        return StripeUnavailableError(message, status, stripe_message=said)
    return StripeRefusedError(message, status, error.code, stripe_message=said)


async def send_meter_event(client: stripe.StripeClient, event: MeterEvent) -> bool:
    """Send one event. True when Stripe accepted it now, False when it already had it.

    Raises `StripeUnavailableError` (retry later, same identifier) or `StripeRefusedError`.

    Through the SDK's `raw_request_async`, which signs, encodes and maps errors as
    `meter_events.create_async` does but leaves the answer undecoded: building the
    `MeterEvent` object that `create_async` returns cost about a quarter of the call's CPU
    (benchmarks/metering_reporting.py), and the answer's only use here is that it is a 200.
    """
    try:
        await client.raw_request_async(
            "post",
            METER_EVENTS_PATH,
            event_name=event.event_name,
            payload={"stripe_customer_id": event.customer_id, "value": str(event.value)},
            identifier=event.identifier,
            timestamp=event.timestamp,
            idempotency_key=idempotency_key(event.identifier, event.key_generation),
        )
    except stripe.StripeError as error:
        if is_duplicate_identifier(error):
            return False
        raise map_stripe_error(error) from error
    return True
