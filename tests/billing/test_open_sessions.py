"""Expiring an organization's open Checkout Session through the SDK against the stand-in: the
one case no HTTP test can time, a session the customer paid between the checkout's list and
its expire, answers the subscription it made."""

from __future__ import annotations

import uuid

import httpx
import pytest
import stripe

from sensor_billing.billing.open_sessions import expire_session
from sensor_billing.devtools.stripe_standin import RunningStandin
from tests.stripe_api.conftest import (  # noqa: F401 - fixtures, found by name
    client,
    running_standin,
    standin,
)

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)

ORGANIZATION = uuid.UUID("2f0c8e8e-6f5e-4d63-9a54-0c7f3f1b2a10")


async def open_session(client: stripe.StripeClient) -> str:  # noqa: F811
    meter = await client.v1.billing.meters.create_async(
        {
            "display_name": "readings",
            "event_name": "readings",
            "default_aggregation": {"formula": "sum"},
        }
    )
    product = await client.v1.products.create_async({"name": "Temperature monitoring"})
    price = await client.v1.prices.create_async(
        {
            "currency": "eur",
            "product": product.id,
            "unit_amount": 1,
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )
    session = await client.v1.checkout.sessions.create_async(
        {
            "mode": "subscription",
            "line_items": [{"price": price.id}],
            "success_url": "https://app.example/done",
            "metadata": {"organization_id": str(ORGANIZATION)},
        }
    )
    return session.id


async def pay(standin: RunningStandin, session_id: str) -> str:  # noqa: F811
    async with httpx.AsyncClient(base_url=f"{standin.url}/_standin") as control:
        paid = await control.post(f"/checkout_sessions/{session_id}/complete", json={})
    assert paid.status_code == 200, paid.text
    subscription_id: str = paid.json()["subscription"]["id"]
    return subscription_id


async def test_an_open_session_is_expired(
    client: stripe.StripeClient,  # noqa: F811
    standin: RunningStandin,  # noqa: F811
) -> None:
    session_id = await open_session(client)

    assert await expire_session(client, session_id, ORGANIZATION) is None

    assert standin.state.checkout_sessions[session_id].status == "expired"


async def test_a_session_paid_before_the_expire_answers_its_subscription(
    client: stripe.StripeClient,  # noqa: F811
    standin: RunningStandin,  # noqa: F811
) -> None:
    session_id = await open_session(client)
    subscription_id = await pay(standin, session_id)

    assert await expire_session(client, session_id, ORGANIZATION) == subscription_id

    assert standin.state.checkout_sessions[session_id].status == "complete"


async def test_a_session_that_expired_by_itself_meanwhile_is_passed_over(
    client: stripe.StripeClient,  # noqa: F811
    standin: RunningStandin,  # noqa: F811
) -> None:
    session_id = await open_session(client)
    standin.state.clock.advance(24 * 3600)

    assert await expire_session(client, session_id, ORGANIZATION) is None
