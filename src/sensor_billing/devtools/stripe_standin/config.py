"""Behaviour switches of the stand-in that are not faults: latency, limits, customer checks."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StandinConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Time a meter-event call holds its (customer, event_name) slot; Stripe allows one
    # concurrent call per customer per meter (docs: rate-limits), so a second call arriving
    # during this time is answered 429.
    processing_latency_seconds: float = Field(0.0, ge=0.0, le=60.0)
    # Time every other write (customers, checkout, subscriptions, ...) takes before it runs:
    # two requests with one Idempotency-Key then overlap, and the second meets the first in
    # progress (409), as it can at Stripe.
    write_latency_seconds: float = Field(0.0, ge=0.0, le=60.0)
    # Calls per second across the account on the metering endpoints; None = unlimited.
    # Stripe: 1,000/s in live mode, 25/s (basic limit) in test mode (docs: rate-limits).
    account_rate_limit_per_second: float | None = Field(None, gt=0.0)
    # None = "auto": strict once any customer has been created through the stand-in, so that
    # tests that never create customers can send any customer id.
    strict_customers: bool | None = None


class EventDestination(BaseModel):
    """Where the stand-in sends thin events (a v2 event destination of type webhook endpoint),
    signed with `secret` as Stripe signs webhooks. Set with `POST /_standin/event_destination`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    secret: str = Field(pattern=r"^whsec_\S+$")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("url must be an http(s) URL")
        return value
