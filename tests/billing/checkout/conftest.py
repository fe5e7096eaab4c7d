"""The checkout and portal endpoints through HTTP: the real app, PostgreSQL, Redis, and the
Stripe stand-in over HTTP, set up as `sensor-billing stripe setup` sets up an account."""

from __future__ import annotations

import pytest

from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.settings import Settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client
from sensor_billing.stripe_api.setup import SetupOptions, SetupResult, set_up_stripe
from tests.stripe_api.conftest import (  # noqa: F401 - fixtures, found by name
    running_standin,
    standin,
)
from tests.support.api import (  # noqa: F401 - fixtures, found by name
    api,
    api_settings,
    service_key,
)

WEBHOOK_SECRET = "whsec_checkout_tests"


@pytest.fixture
def settings(
    database_url: str,
    redis_url: str,
    standin: RunningStandin,  # noqa: F811 - the fixture imported above, emptied for each test
) -> Settings:
    return api_settings(database_url, redis_url, standin, stripe_webhook_secret=WEBHOOK_SECRET)


@pytest.fixture
async def stripe_setup(settings: Settings) -> SetupResult:
    """What `sensor-billing stripe setup` makes: two meters, the product, its metered prices."""
    http = create_http_client(timeout=5.0)
    try:
        return await set_up_stripe(create_stripe_client(settings, http_client=http), SetupOptions())
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in the SDK
