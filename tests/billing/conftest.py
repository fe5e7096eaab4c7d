"""The app as the SaaS backend calls it (the /v1 billing endpoints, with a service key), on the
test database and Redis, with a Stripe address that records every connection made to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
import stripe
from fastapi import FastAPI

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import DEFAULT_API_KEY, RunningStandin, run_in_thread
from sensor_billing.service_keys import issue_service_key
from sensor_billing.settings import Settings, load_settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client
from tests.support.app import running_app
from tests.support.billing_state import at
from tests.support.net import ConnectionWitness
from tests.webhooks.conftest import (  # noqa: F401 - fixtures, found by name
    SECRET,
    client,
    settings,
)


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    stripe: ConnectionWitness

    def at(self, seconds: int) -> None:
        """Move the app's clock."""
        self.app.state.clock = lambda: at(seconds)

    async def billing(self, organization_id: object) -> httpx.Response:
        return await self.client.get(f"/v1/organizations/{organization_id}/billing")


@pytest.fixture
def stripe_witness() -> Iterator[ConnectionWitness]:
    witness = ConnectionWitness()
    yield witness
    witness.close()


@pytest.fixture
def api_settings(database_url: str, redis_url: str, stripe_witness: ConnectionWitness) -> Settings:
    # A Stripe key and an address that records any connection: /billing must never use them.
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        stripe_webhook_secret=SECRET,
        stripe_api_key="sk_test_billing_endpoint",
        stripe_api_base=stripe_witness.url,
        stripe_meter_events_base=stripe_witness.url,
    )


ApiFactory = Callable[[Settings], AbstractAsyncContextManager[Api]]


@pytest.fixture
def api_factory(sessions: SessionFactory, stripe_witness: ConnectionWitness) -> ApiFactory:
    """Opens the app on the given settings, as the SaaS backend calls it."""

    @asynccontextmanager
    async def open_api(app_settings: Settings) -> AsyncIterator[Api]:
        key = await issue_service_key(sessions, "saas-backend")
        async with running_app(app_settings) as (app, http):
            http.headers["Authorization"] = f"Bearer {key}"
            yield Api(app, http, stripe_witness)

    return open_api


@pytest.fixture
async def api(api_settings: Settings, api_factory: ApiFactory) -> AsyncIterator[Api]:
    async with api_factory(api_settings) as api:
        yield api


@pytest.fixture
def standin() -> Iterator[RunningStandin]:
    """A stand-in of the test's own (the preview and checkout tests change its state)."""
    with run_in_thread(api_keys=[DEFAULT_API_KEY]) as running:
        yield running


@pytest.fixture
def standin_settings(database_url: str, redis_url: str, standin: RunningStandin) -> Settings:
    """The app and the worker as deployed, Stripe being the stand-in."""
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        stripe_webhook_secret=SECRET,
        stripe_api_key=DEFAULT_API_KEY,
        stripe_api_base=standin.url,
        stripe_meter_events_base=standin.url,
        stripe_preview_timeout_seconds=10,
    )


@pytest.fixture
async def stripe_client(standin_settings: Settings) -> AsyncIterator[stripe.StripeClient]:
    """The service's Stripe client, on the stand-in."""
    http = create_http_client(timeout=5.0)
    yield create_stripe_client(standin_settings, http_client=http)
    await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in the SDK


@pytest.fixture
async def standin_api(standin_settings: Settings, api_factory: ApiFactory) -> AsyncIterator[Api]:
    """The app as the SaaS backend calls it, its Stripe being the test's stand-in."""
    async with api_factory(standin_settings) as api:
        yield api
