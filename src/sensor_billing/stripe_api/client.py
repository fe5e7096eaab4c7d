"""Building the `stripe` SDK client from settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe

from sensor_billing.errors import ConfigurationError
from sensor_billing.settings import Settings

# Seconds before a call counts as a timeout (and is retried by the queue). Meter event calls
# answer in well under a second; 80 s (the SDK default) would hold a worker slot for long.
REQUEST_TIMEOUT_SECONDS = 20.0

# The SDK's request telemetry (an `X-Stripe-Client-Telemetry` header carrying the previous
# call's latency, for Stripe's own statistics) costs each call its bookkeeping and encoding:
# measured with a local server, about 5% of a meter event call's CPU, and the meter worker is
# CPU-bound on that call. It changes nothing Stripe does with a request.
stripe.enable_telemetry = False


class StripeHTTPClient(stripe.AIOHTTPClient):
    """The SDK's aiohttp client, with the whole answer read inside the error mapping.

    aiohttp rather than the SDK's default httpx: measured with the stand-in in another process
    (benchmarks/metering_reporting.py), one meter event call cost this process about 2.5 ms of
    CPU through httpx (httpcore checks every pooled connection for every request) and about
    0.5 ms through aiohttp; the meter worker is CPU-bound on exactly that.

    stripe 16.1's `AIOHTTPClient.request_async` reads the body after its `try`: a connection
    dropped or timed out mid-body would escape as an aiohttp error instead of
    `stripe.APIConnectionError`, which the worker maps to a retry. Reading it inside, as the
    httpx client does, keeps every network failure one retryable error; `async with` hands the
    connection back to the pool (or closes it) whatever happens.
    """

    def __init__(self, timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        super().__init__(timeout=timeout)

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        args, kwargs = self._get_request_args_kwargs(method, url, headers, post_data)
        try:
            async with self._session.request(*args, **kwargs) as response:
                return await response.read(), response.status, response.headers
        except Exception as error:  # what the SDK maps for the request itself
            self._handle_request_error(error)


def create_http_client(timeout: float = REQUEST_TIMEOUT_SECONDS) -> StripeHTTPClient:
    """One connection pool for every Stripe call of a process; close it with `close_async`."""
    return StripeHTTPClient(timeout=timeout)


def create_stripe_client(
    settings: Settings,
    *,
    api_key: str | None = None,
    http_client: stripe.HTTPClient | None = None,
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
