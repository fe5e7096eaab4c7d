"""The stand-in and the real app together: a Checkout Session made through the SDK, paid through
the control API, and its signed events stored by `POST /webhooks/stripe`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import stripe
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.settings import load_settings
from tests.devtools.helpers import BillingCatalog, open_session
from tests.support.app import serving_app

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)

APP_SECRET = "whsec_app_checkout_secret"


@pytest.fixture
def app_url(
    database_url: str, redis_url: str, sessions: SessionFactory, standin: RunningStandin
) -> Iterator[str]:
    settings = load_settings(
        database_url=database_url, redis_url=redis_url, stripe_webhook_secret=APP_SECRET
    )
    with serving_app(settings) as url:
        yield url


async def test_a_paid_session_links_the_organization_and_stores_the_active_subscription(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    sessions: SessionFactory,
    app_url: str,
) -> None:
    organization = uuid.uuid4()
    async with unit_of_work(sessions) as session:
        await session.execute(
            text("INSERT INTO organizations (id, name) VALUES (:id, 'Cold Chain')"),
            {"id": organization},
        )
    await control.post(
        "/webhook_endpoints", json={"url": f"{app_url}/webhooks/stripe", "secret": APP_SECRET}
    )
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})
    checkout = await open_session(
        client,
        catalog,
        customer=customer.id,
        client_reference_id=str(organization),
        metadata={"organization_id": str(organization)},
    )

    completed = await control.post(f"/checkout_sessions/{checkout.id}/complete", json={})

    assert [d["status"] for d in completed.json()["deliveries"]] == [200, 200]
    subscription = completed.json()["subscription"]
    async with unit_of_work(sessions) as session:
        linked = (
            await session.execute(
                text("SELECT stripe_customer_id FROM organizations WHERE id = :id"),
                {"id": organization},
            )
        ).scalar_one()
        stored = (
            await session.execute(
                text(
                    "SELECT stripe_customer_id, status, metered_price_ids,"
                    " extract(epoch FROM current_period_end)::bigint"
                    " FROM stripe_subscriptions WHERE id = :id"
                ),
                {"id": subscription["id"]},
            )
        ).one()
    assert linked == customer.id
    assert tuple(stored) == (
        customer.id,
        "active",
        [catalog.metered_price],
        subscription["items"]["data"][0]["current_period_end"],
    )
