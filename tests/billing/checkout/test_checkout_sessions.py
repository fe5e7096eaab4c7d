"""`POST /v1/organizations/{id}/checkout-sessions` against the stand-in: a subscription-mode
session with the two metered prices for the organization's customer (made first, once), named
so the webhook that follows links them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import text

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.settings import Settings
from sensor_billing.stripe_api.setup import SetupResult
from tests.billing.checkout.conftest import WEBHOOK_SECRET
from tests.billing.checkout.test_refusals import subscription_event
from tests.support.api import (
    CANCEL_URL,
    SUCCESS_URL,
    add_organization,
    checkout_body,
    checkout_path,
    portal_path,
)
from tests.support.app import serving_app
from tests.support.stripe_events import deliver


async def stored_customer(sessions: SessionFactory, organization_id: uuid.UUID) -> str | None:
    async with sessions() as session:
        customer: str | None = await session.scalar(
            text("SELECT stripe_customer_id FROM organizations WHERE id = :id"),
            {"id": organization_id},
        )
        return customer


def metered_prices(setup: SetupResult) -> list[str]:
    return [setup.id_of("price", "active_sensors"), setup.id_of("price", "temperature_readings")]


async def test_checkout_makes_a_subscription_session_with_both_metered_prices_and_a_customer(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions, "Cold Chain Ltd")

    answer = await api.post(
        checkout_path(organization_id),
        json=checkout_body(),
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )

    assert answer.status_code == 201, answer.text
    body = answer.json()
    customer_id = await stored_customer(sessions, organization_id)
    assert body["organization_id"] == str(organization_id)
    assert body["customer_id"] == customer_id
    made = standin.state.checkout_sessions[body["id"]]
    assert body["url"] == made.url
    assert made.customer == customer_id
    assert [(item.price, item.quantity) for item in made.line_items] == [
        (price, None) for price in metered_prices(stripe_setup)
    ]
    reference = {"organization_id": str(organization_id)}
    assert made.client_reference_id == str(organization_id)
    assert made.subscription_metadata == reference
    # The session also names the Stripe key it was made under, so a retry of this request
    # knows it for its own and does not expire it (billing/open_sessions.py).
    assert made.metadata == {**reference, "checkout_request": made.metadata["checkout_request"]}
    assert made.metadata["checkout_request"].startswith("sb-api-checkout-session-")
    assert (made.success_url, made.cancel_url) == (SUCCESS_URL, CANCEL_URL)
    customer = standin.state.customers[customer_id or ""]
    assert (customer.name, customer.metadata) == ("Cold Chain Ltd", reference)


async def test_an_organization_with_a_customer_keeps_it(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    async with httpx.AsyncClient(base_url=standin.url) as stripe_http:
        made = await stripe_http.post(
            "/v1/customers",
            data={"name": "Cold Chain Ltd"},
            headers={"Authorization": "Bearer sk_test_standin"},
        )
    customer_id = made.json()["id"]
    organization_id = await add_organization(sessions, customer_id=customer_id)

    answer = await api.post(checkout_path(organization_id), json=checkout_body())

    assert answer.status_code == 201, answer.text
    assert answer.json()["customer_id"] == customer_id
    assert list(standin.state.customers) == [customer_id]


async def test_two_checkouts_at_once_for_an_organization_without_a_customer_make_one(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions)

    answers = await asyncio.gather(
        *(
            api.post(
                checkout_path(organization_id),
                json=checkout_body(),
                headers={"Idempotency-Key": f"tab-{tab}"},
            )
            for tab in range(4)
        )
    )

    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len(standin.state.customers) == 1
    (customer_id,) = standin.state.customers
    assert {a.json()["customer_id"] for a in answers} == {customer_id}
    assert await stored_customer(sessions, organization_id) == customer_id
    # Each answer named its own session; each one made after another expired it.
    assert {a.json()["id"] for a in answers} == set(standin.state.checkout_sessions)
    assert [s.status for s in standin.state.checkout_sessions.values()].count("open") == 1


async def test_a_session_stripe_refuses_is_502_with_stripes_code_and_changes_nothing(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    # Deleted in Stripe; the customer.deleted webhook has not arrived (or was lost).
    async with httpx.AsyncClient(base_url=standin.url) as stripe_http:
        auth = {"Authorization": "Bearer sk_test_standin"}
        made = await stripe_http.post("/v1/customers", data={"name": "Gone"}, headers=auth)
        customer_id = made.json()["id"]
        await stripe_http.delete(f"/v1/customers/{customer_id}", headers=auth)
    organization_id = await add_organization(sessions, customer_id=customer_id)
    headers = {"Idempotency-Key": "checkout-1"}

    answer = await api.post(checkout_path(organization_id), json=checkout_body(), headers=headers)
    replay = await api.post(checkout_path(organization_id), json=checkout_body(), headers=headers)

    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error["code"] == "stripe_refused"
    assert error["stripe"]["code"] == "resource_missing"
    assert customer_id in error["stripe"]["message"]
    assert error["message"] == f"Stripe refused the call: {error['stripe']['message']}"
    assert standin.state.checkout_sessions == {}
    assert await stored_customer(sessions, organization_id) == customer_id
    # Stripe's refusal is the endpoint's answer for good: kept under the key.
    assert (replay.status_code, replay.json()) == (502, answer.json())
    assert replay.headers["idempotent-replayed"] == "true"


async def test_a_canceled_subscription_does_not_stand_in_the_way_of_a_new_one(
    api: httpx.AsyncClient, sessions: SessionFactory, stripe_setup: SetupResult
) -> None:
    organization_id = await add_organization(sessions)
    first = await api.post(checkout_path(organization_id), json=checkout_body())
    customer_id = first.json()["customer_id"]
    ended = subscription_event("canceled", customer_id)
    assert (await deliver(api, ended, secret=WEBHOOK_SECRET)).status_code == 200

    again = await api.post(checkout_path(organization_id), json=checkout_body())

    assert again.status_code == 201, again.text


@pytest.fixture
def app_url(settings: Settings, sessions: SessionFactory) -> Iterator[str]:
    """The app over TCP, for the stand-in to deliver its webhooks to."""
    with serving_app(settings) as url:
        yield url


async def test_a_paid_checkout_links_its_subscription_so_the_next_checkout_is_refused(
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
    service_key: str,
    app_url: str,
) -> None:
    organization_id = await add_organization(sessions)
    async with (
        httpx.AsyncClient(base_url=f"{standin.url}/_standin") as control,
        httpx.AsyncClient(
            base_url=app_url, headers={"Authorization": f"Bearer {service_key}"}
        ) as api,
    ):
        registered = await control.post(
            "/webhook_endpoints",
            json={"url": f"{app_url}/webhooks/stripe", "secret": WEBHOOK_SECRET},
        )
        assert registered.status_code == 200, registered.text
        started = await api.post(checkout_path(organization_id), json=checkout_body())
        assert started.status_code == 201, started.text

        paid = await control.post(f"/checkout_sessions/{started.json()['id']}/complete", json={})
        again = await api.post(checkout_path(organization_id), json=checkout_body())

    assert paid.status_code == 200, paid.text
    assert {d["status"] for d in paid.json()["deliveries"]} == {200}
    subscription_id = paid.json()["subscription"]["id"]
    async with sessions() as session:
        stored = (
            await session.execute(
                text("SELECT stripe_customer_id, status FROM stripe_subscriptions WHERE id = :id"),
                {"id": subscription_id},
            )
        ).one()
    assert tuple(stored) == (started.json()["customer_id"], "active")
    assert again.status_code == 409
    assert again.json()["error"]["portal_sessions"] == portal_path(organization_id)
