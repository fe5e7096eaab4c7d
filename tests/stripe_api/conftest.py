"""The Stripe stand-in over HTTP and a client built the way the commands build theirs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import stripe

from sensor_billing.devtools.stripe_standin import DEFAULT_API_KEY, RunningStandin, run_in_thread
from sensor_billing.settings import load_settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client


@pytest.fixture(scope="session")
def running_standin() -> Iterator[RunningStandin]:
    with run_in_thread(api_keys=[DEFAULT_API_KEY]) as standin:
        yield standin


@pytest.fixture
def standin(running_standin: RunningStandin) -> RunningStandin:
    running_standin.state.reset()
    return running_standin


@pytest.fixture
async def client(standin: RunningStandin) -> AsyncIterator[stripe.StripeClient]:
    settings = load_settings(
        stripe_api_key=DEFAULT_API_KEY,
        stripe_api_base=standin.url,
        stripe_meter_events_base=standin.url,
    )
    http = create_http_client(timeout=5.0)
    yield create_stripe_client(settings, http_client=http)
    await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in the SDK
