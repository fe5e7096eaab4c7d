"""`POST /v1/organizations/{id}/portal-sessions` against the stand-in."""

from __future__ import annotations

import httpx

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.stripe_api.setup import SetupResult
from tests.support.api import add_organization, checkout_body, checkout_path, portal_path

RETURN_URL = "https://app.example.com/account/billing"


async def test_the_portal_opens_for_the_customer_the_checkout_made(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions)
    checkout = await api.post(checkout_path(organization_id), json=checkout_body())
    customer_id = checkout.json()["customer_id"]

    answer = await api.post(
        portal_path(organization_id),
        json={"return_url": RETURN_URL},
        headers={"Idempotency-Key": "portal-1"},
    )
    replay = await api.post(
        portal_path(organization_id),
        json={"return_url": RETURN_URL},
        headers={"Idempotency-Key": "portal-1"},
    )

    assert answer.status_code == 201, answer.text
    body = answer.json()
    made = standin.state.portal_sessions[body["id"]]
    assert (body["customer_id"], body["url"]) == (customer_id, made.url)
    assert (made.customer, made.return_url) == (customer_id, RETURN_URL)
    assert (replay.status_code, replay.json()) == (201, body)
    assert replay.headers["idempotent-replayed"] == "true"
    assert len(standin.state.portal_sessions) == 1


async def test_a_portal_url_that_is_not_http_is_refused_naming_it(
    api: httpx.AsyncClient, sessions: SessionFactory, standin: RunningStandin
) -> None:
    organization_id = await add_organization(sessions, customer_id="cus_known")

    answer = await api.post(portal_path(organization_id), json={"return_url": "mailto:x@y.z"})

    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith("body parameter return_url:")
    assert standin.state.portal_sessions == {}
