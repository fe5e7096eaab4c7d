"""Calling the /v1 API of the real app: a service key, an organization, the app itself."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.devtools.stripe_standin import DEFAULT_API_KEY
from sensor_billing.service_keys import issue_service_key
from sensor_billing.settings import Settings, load_settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client
from sensor_billing.stripe_api.setup import SetupOptions, SetupResult, set_up_stripe
from tests.support.app import running_app

SUCCESS_URL = "https://app.example.com/billing/done?session={CHECKOUT_SESSION_ID}"
CANCEL_URL = "https://app.example.com/billing"


def api_settings(
    database_url: str, redis_url: str, stripe_url: str | None, **overrides: Any
) -> Settings:
    """The app as deployed, its Stripe calls going to `stripe_url`, the stand-in's (None: no
    STRIPE_API_KEY)."""
    stripe: dict[str, Any] = (
        {}
        if stripe_url is None
        else {
            "stripe_api_key": DEFAULT_API_KEY,
            "stripe_api_base": stripe_url,
            "stripe_meter_events_base": stripe_url,
        }
    )
    return load_settings(database_url=database_url, redis_url=redis_url, **stripe, **overrides)


@asynccontextmanager
async def api_client(settings: Settings, secret: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the running app that sends `secret` as its service key."""
    async with running_app(settings) as (_, client):
        client.headers["Authorization"] = f"Bearer {secret}"
        yield client


async def add_organization(
    sessions: SessionFactory, name: str = "Cold Chain Ltd", customer_id: str | None = None
) -> uuid.UUID:
    organization_id = uuid.uuid4()
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO organizations (id, name, stripe_customer_id)"
                " VALUES (:id, :name, :customer)"
            ),
            {"id": organization_id, "name": name, "customer": customer_id},
        )
    return organization_id


def checkout_path(organization_id: uuid.UUID | str) -> str:
    return f"/v1/organizations/{organization_id}/checkout-sessions"


def portal_path(organization_id: uuid.UUID | str) -> str:
    return f"/v1/organizations/{organization_id}/portal-sessions"


def checkout_body() -> dict[str, str]:
    return {"success_url": SUCCESS_URL, "cancel_url": CANCEL_URL}


@pytest.fixture
async def service_key(sessions: SessionFactory) -> str:
    """A service key's secret (a fixture: import it into a conftest)."""
    return await issue_service_key(sessions, "saas-backend")


@pytest.fixture
async def api(settings: Settings, service_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the conftest's `settings`, called with `service_key` (a fixture)."""
    async with api_client(settings, service_key) as client:
        yield client


@pytest.fixture
async def stripe_setup(settings: Settings) -> SetupResult:
    """What `sensor-billing stripe setup` makes: two meters, the product, its metered prices."""
    http = create_http_client(timeout=5.0)
    try:
        return await set_up_stripe(create_stripe_client(settings, http_client=http), SetupOptions())
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in the SDK
