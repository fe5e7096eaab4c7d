"""A subscription made the way a customer makes one, in the Stripe stand-in, its events delivered
signed to the app: for tests of what the app does with the events that follow."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import stripe

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import DEFAULT_API_KEY, RunningStandin
from sensor_billing.stripe_api.setup import SetupResult
from tests.billing.conftest import Api
from tests.support.billing_state import new_organization
from tests.support.stripe_events import deliver
from tests.webhooks.conftest import SECRET


@dataclass(frozen=True)
class Subscribed:
    organization_id: uuid.UUID
    customer_id: str
    subscription_id: str


def standin_control(standin: RunningStandin) -> httpx.AsyncClient:
    """The stand-in over HTTP with its secret key: its /v1 API and its control API."""
    return httpx.AsyncClient(
        base_url=standin.url, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}, timeout=30
    )


async def deliver_standin_events(
    api: Api, control: httpx.AsyncClient, event_ids: list[str]
) -> list[httpx.Response]:
    """The stand-in's events, as `GET /v1/events/{id}` answers them, delivered signed in order."""
    answers = []
    for event_id in event_ids:
        event = (await control.get(f"/v1/events/{event_id}")).json()
        answers.append(await deliver(api.client, event, secret=SECRET))
    return answers


async def subscribe_in_standin(
    api: Api,
    client: stripe.StripeClient,
    standin: RunningStandin,
    sessions: SessionFactory,
    setup: SetupResult,
) -> Subscribed:
    """A customer, its organization, a Checkout Session of `setup`'s prices paid in the
    stand-in, and the events that made delivered (signed) to the app."""
    customer = (await client.v1.customers.create_async({"name": "Aurora Dairy"})).id
    org = await new_organization(sessions, customer)
    params: Any = {
        "mode": "subscription",
        "customer": customer,
        "client_reference_id": str(org),
        "success_url": "https://app.example.com/ok",
        "line_items": [
            {"price": setup.id_of("price", name)}
            for name in ("active_sensors", "temperature_readings")
        ],
    }
    checkout = await client.v1.checkout.sessions.create_async(params)
    async with standin_control(standin) as control:
        paid = await control.post(
            f"/_standin/checkout_sessions/{checkout.id}/complete", json={"deliver": False}
        )
        assert paid.status_code == 200, paid.text
        for answer in await deliver_standin_events(api, control, paid.json()["events"]):
            assert answer.status_code == 200, answer.text
    return Subscribed(org, customer, paid.json()["subscription"]["id"])
