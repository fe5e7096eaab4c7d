"""The checkout and portal endpoints through HTTP: the real app, PostgreSQL, Redis, and the
Stripe stand-in over HTTP, set up as `sensor-billing stripe setup` sets up an account."""

from __future__ import annotations

import pytest

from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.settings import Settings
from tests.stripe_api.conftest import (  # noqa: F401 - fixtures, found by name
    running_standin,
    standin,
)
from tests.support.api import (  # noqa: F401 - fixtures, found by name
    api,
    api_settings,
    service_key,
    stripe_setup,
)

WEBHOOK_SECRET = "whsec_checkout_tests"


@pytest.fixture
def settings(
    database_url: str,
    redis_url: str,
    standin: RunningStandin,  # noqa: F811 - the fixture imported above, emptied for each test
) -> Settings:
    return api_settings(database_url, redis_url, standin.url, stripe_webhook_secret=WEBHOOK_SECRET)
