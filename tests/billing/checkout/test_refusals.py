"""What the checkout and portal endpoints refuse before they make anything in Stripe."""

from __future__ import annotations

import uuid

import httpx

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.settings import Settings
from sensor_billing.stripe_api.setup import SetupResult
from tests.billing.checkout.conftest import WEBHOOK_SECRET
from tests.support.api import (
    add_organization,
    api_client,
    api_settings,
    checkout_body,
    checkout_path,
    portal_path,
)
from tests.support.state import count
from tests.support.stripe_events import deliver, make_event

T0 = 1_764_000_000  # 2025-11-24, after the basil release


def subscription_event(status: str, customer_id: str, *, created: int = T0) -> dict[str, object]:
    items = {
        "object": "list",
        "data": [
            {
                "id": "si_1",
                "object": "subscription_item",
                "current_period_start": created,
                "current_period_end": created + 30 * 86400,
                "price": {
                    "id": "price_1",
                    "object": "price",
                    "recurring": {"usage_type": "metered"},
                },
            }
        ],
    }
    subscription = {
        "id": "sub_checkout_1",
        "object": "subscription",
        "customer": customer_id,
        "status": status,
        "cancel_at_period_end": False,
        "ended_at": None,
        "items": items,
    }
    return make_event("customer.subscription.updated", subscription, created=created)


async def test_an_organization_with_a_live_subscription_gets_409_naming_the_portal(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions, customer_id="cus_subscribed")
    delivered = await deliver(
        api, subscription_event("past_due", "cus_subscribed"), secret=WEBHOOK_SECRET
    )
    assert delivered.status_code == 200, delivered.text

    answer = await api.post(checkout_path(organization_id), json=checkout_body())

    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "subscription_exists"
    assert error["portal_sessions"] == portal_path(organization_id)
    assert "sub_checkout_1" in error["message"]
    assert standin.state.customers == {}


async def test_without_stripe_setup_checkout_is_503_and_makes_no_customer(
    api: httpx.AsyncClient, sessions: SessionFactory, standin: RunningStandin
) -> None:
    organization_id = await add_organization(sessions)

    answer = await api.post(checkout_path(organization_id), json=checkout_body())

    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "checkout_not_configured"
    assert "sensor-billing stripe setup" in error["message"]
    assert standin.state.customers == {}
    assert await count(sessions, "organizations", "stripe_customer_id IS NOT NULL") == 0


async def test_without_a_stripe_api_key_checkout_and_portal_are_503(
    database_url: str, redis_url: str, sessions: SessionFactory, service_key: str
) -> None:
    organization_id = await add_organization(sessions, customer_id="cus_known")
    settings: Settings = api_settings(database_url, redis_url, None)

    async with api_client(settings, service_key) as client:
        checkout = await client.post(checkout_path(organization_id), json=checkout_body())
        portal = await client.post(
            portal_path(organization_id), json={"return_url": "https://app.example.com"}
        )

    for answer in (checkout, portal):
        assert answer.status_code == 503
        assert answer.json()["error"]["message"].startswith("STRIPE_API_KEY is not set")


async def test_the_portal_for_an_organization_without_a_customer_points_to_checkout(
    api: httpx.AsyncClient, sessions: SessionFactory, standin: RunningStandin
) -> None:
    organization_id = await add_organization(sessions)

    answer = await api.post(
        portal_path(organization_id), json={"return_url": "https://app.example.com/account"}
    )

    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "customer_missing"
    assert checkout_path(organization_id) in error["message"]
    assert standin.state.customers == {}


async def test_an_organization_whose_customer_was_deleted_gets_409_from_both(
    api: httpx.AsyncClient, sessions: SessionFactory, stripe_setup: SetupResult
) -> None:
    organization_id = await add_organization(sessions, customer_id="cus_gone")
    deleted = make_event(
        "customer.deleted", {"id": "cus_gone", "object": "customer", "deleted": True}, created=T0
    )
    assert (await deliver(api, deleted, secret=WEBHOOK_SECRET)).status_code == 200

    checkout = await api.post(checkout_path(organization_id), json=checkout_body())
    portal = await api.post(
        portal_path(organization_id), json={"return_url": "https://app.example.com"}
    )

    for answer in (checkout, portal):
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "customer_deleted"
        assert "cus_gone" in answer.json()["error"]["message"]


async def test_a_portal_for_an_unknown_organization_is_404(api: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()

    answer = await api.post(portal_path(missing), json={"return_url": "https://app.example.com"})

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "organization_not_found"
