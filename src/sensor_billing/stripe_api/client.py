"""Building the `stripe` SDK client from settings."""

from __future__ import annotations

import stripe

from sensor_billing.errors import ConfigurationError
from sensor_billing.settings import Settings

# Seconds before a call counts as a timeout (and is retried by the queue). Meter event calls
# answer in well under a second; 80 s (the SDK default) would hold a worker slot for long.
REQUEST_TIMEOUT_SECONDS = 20.0


def create_http_client() -> stripe.HTTPXClient:
    """One connection pool for every Stripe call of a process; close it with `close_async`."""
    return stripe.HTTPXClient(timeout=REQUEST_TIMEOUT_SECONDS)


def create_stripe_client(
    settings: Settings,
    *,
    api_key: str | None = None,
    http_client: stripe.HTTPXClient | None = None,
) -> stripe.StripeClient:
    key = api_key or (
        settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else None
    )
    if not key:
        raise ConfigurationError("STRIPE_API_KEY is not set: usage cannot be reported to Stripe")
    return stripe.StripeClient(
        key,
        http_client=http_client or create_http_client(),
        base_addresses={
            "api": settings.stripe_api_base,
            "meter_events": settings.stripe_meter_events_base,
        },
        # The job queue owns retries (attempts, backoff); the SDK's own would hide them.
        max_network_retries=0,
    )
