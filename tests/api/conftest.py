"""The /v1 platform through HTTP: the real app on the test database and Redis, its Stripe
calls going to the stand-in over HTTP."""

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


@pytest.fixture
def settings(
    database_url: str,
    redis_url: str,
    standin: RunningStandin,  # noqa: F811 - the fixture imported above, emptied for each test
) -> Settings:
    return api_settings(database_url, redis_url, standin.url)
