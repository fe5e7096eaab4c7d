"""Stripe's limiters on the metering endpoints (docs: rate-limits).

A rate-limited call is answered 429 with `Stripe-Rate-Limited-Reason` (one of Stripe's
documented reasons: global-rate, endpoint-rate, global-concurrency, endpoint-concurrency,
resource-specific) and is never saved by the idempotency layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .errors import RateLimitedError
from .state import StandinState

RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. Learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)


def rate_limited(reason: str, message: str = RATE_LIMIT_MESSAGE) -> RateLimitedError:
    return RateLimitedError(
        message, code="rate_limit", headers={"Stripe-Rate-Limited-Reason": reason}
    )


def admit_metering_call(state: StandinState) -> None:
    """The account-wide calls-per-second limit shared by v1 meter events and the v2 stream."""
    with state.lock:
        limit = state.config.account_rate_limit_per_second
        if limit is None:
            return
        now = state.clock.now()
        calls = state.recent_metering_calls
        while calls and calls[0] <= now - 1.0:
            calls.popleft()
        if len(calls) >= limit:
            state.counters.rate_limited += 1
            raise rate_limited("endpoint-rate")
        calls.append(now)


@contextmanager
def customer_meter_slot(state: StandinState, customer: str, event_name: str) -> Iterator[None]:
    """Stripe allows "one concurrent call per customer per meter"; a second one gets 429."""
    key = (customer, event_name)
    with state.lock:
        if key in state.in_flight:
            state.counters.rate_limited += 1
            raise rate_limited(
                "resource-specific",
                "Too many concurrent requests for this customer and meter. Send one meter "
                "event at a time per customer and meter.",
            )
        state.in_flight.add(key)
    try:
        yield
    finally:
        with state.lock:
            state.in_flight.discard(key)
