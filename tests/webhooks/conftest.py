from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from sensor_billing.db import SessionFactory
from sensor_billing.settings import Settings, load_settings
from tests.metering.conftest import (  # noqa: F401 - fixtures, found by name
    close_http_clients,
    running_standin,
    standin,
)
from tests.support.app import running_app

SECRET = "whsec_test_secret"
ROLLED_IN_SECRET = "whsec_rolled_in_secret"
RETIRED_SECRET = "whsec_retired_secret"


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        stripe_webhook_secret=f"{SECRET},{ROLLED_IN_SECRET}",
    )


@pytest.fixture
async def client(settings: Settings, sessions: SessionFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as (_, client):
        yield client
