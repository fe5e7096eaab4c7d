"""One organization, one open Checkout Session: a checkout expires the organization's other
open sessions before it makes its own, so a customer who clicked "Subscribe" in two tabs (or
came back the next day) can pay only one of them, and Stripe makes one subscription."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from sensor_billing.api import idempotency_repository
from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import (
    DEFAULT_API_KEY,
    FaultPlan,
    FaultTarget,
    RunningStandin,
)
from sensor_billing.stripe_api.setup import SetupResult
from tests.support.api import add_organization, checkout_body, checkout_path

NEW_SUCCESS_URL = "https://app.example.com/welcome?session={CHECKOUT_SESSION_ID}"


def open_sessions(standin: RunningStandin) -> list[str]:
    return [s.id for s in standin.state.checkout_sessions.values() if s.status == "open"]


async def checkout(
    api: httpx.AsyncClient, organization_id: uuid.UUID, key: str, **body: str
) -> httpx.Response:
    return await api.post(
        checkout_path(organization_id),
        json={**checkout_body(), **body},
        headers={"Idempotency-Key": key},
    )


async def pay(standin: RunningStandin, session_id: str) -> httpx.Response:
    """What the customer does on Stripe's page: pay the session."""
    async with httpx.AsyncClient(base_url=f"{standin.url}/_standin") as control:
        return await control.post(f"/checkout_sessions/{session_id}/complete", json={})


async def test_two_checkouts_with_different_keys_leave_one_session_to_pay_and_one_subscription(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions)

    first = await checkout(api, organization_id, "tab-1")
    # The product changed its return page in between: the newest session goes there.
    second = await checkout(api, organization_id, "tab-2", success_url=NEW_SUCCESS_URL)

    assert (first.status_code, second.status_code) == (201, 201), [first.text, second.text]
    assert open_sessions(standin) == [second.json()["id"]]
    assert standin.state.checkout_sessions[second.json()["id"]].success_url == NEW_SUCCESS_URL
    # The customer pays in both tabs: the older one shows Stripe's "expired" page.
    paid_first = await pay(standin, first.json()["id"])
    paid_second = await pay(standin, second.json()["id"])
    assert paid_first.status_code == 409, paid_first.text
    assert paid_second.status_code == 200, paid_second.text
    assert len(standin.state.subscriptions) == 1


async def test_checkouts_at_once_with_different_keys_leave_one_open_session(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions)

    answers = await asyncio.gather(
        *(checkout(api, organization_id, f"tab-{tab}") for tab in range(4))
    )

    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    answered = {a.json()["id"] for a in answers}
    assert len(answered) == 4
    (still_open,) = open_sessions(standin)
    assert still_open in answered


async def test_checkouts_at_once_without_idempotency_keys_leave_one_open_session(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions)

    answers = await asyncio.gather(
        *(api.post(checkout_path(organization_id), json=checkout_body()) for _ in range(3))
    )

    assert [a.status_code for a in answers] == [201] * 3, [a.text for a in answers]
    (still_open,) = open_sessions(standin)
    assert still_open in {a.json()["id"] for a in answers}


async def test_a_retry_after_a_crash_gets_a_new_open_session_when_another_checkout_expired_its(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    organization_id = await add_organization(sessions)

    def crash(*args: object) -> None:
        raise RuntimeError("the process died before the answer was stored")

    with monkeypatch.context() as patch:
        patch.setattr(idempotency_repository, "store_answer", crash)
        crashed = await checkout(api, organization_id, "tab-1")
    other_tab = await checkout(api, organization_id, "tab-2")
    retried = await checkout(api, organization_id, "tab-1")
    retried_again = await checkout(api, organization_id, "tab-1")

    assert crashed.status_code == 500
    assert (other_tab.status_code, retried.status_code) == (201, 201), retried.text
    # Stripe replays tab 1's first session (expired by tab 2): a new one replaces it.
    assert open_sessions(standin) == [retried.json()["id"]]
    assert len(standin.state.checkout_sessions) == 3
    assert retried_again.json() == retried.json()


async def test_a_subscription_stripe_made_before_its_webhook_arrived_refuses_the_next_checkout(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions)
    first = await checkout(api, organization_id, "tab-1")
    paid = await pay(standin, first.json()["id"])  # no webhook reaches the app
    assert paid.status_code == 200, paid.text

    again = await checkout(api, organization_id, "next-day")

    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert error["code"] == "subscription_exists"
    assert paid.json()["subscription"]["id"] in error["message"]
    assert len(standin.state.checkout_sessions) == 1


async def test_a_session_another_integration_opened_for_the_customer_is_left_open(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions)
    first = await checkout(api, organization_id, "tab-1")
    customer_id = first.json()["customer_id"]
    async with httpx.AsyncClient(base_url=standin.url) as stripe_http:
        theirs = await stripe_http.post(
            "/v1/checkout/sessions",
            data={
                "mode": "subscription",
                "customer": customer_id,
                "line_items[0][price]": stripe_setup.id_of("price", "active_sensors"),
                "success_url": "https://elsewhere.example/done",
            },
            headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"},
        )
    assert theirs.status_code == 200, theirs.text

    second = await checkout(api, organization_id, "tab-2")

    assert second.status_code == 201, second.text
    assert sorted(open_sessions(standin)) == sorted([theirs.json()["id"], second.json()["id"]])


async def test_stripe_failing_the_list_is_502_and_leaves_the_open_session_as_it_was(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions)
    first = await checkout(api, organization_id, "tab-1")
    standin.state.set_faults(FaultPlan(server_error=1.0, targets=(FaultTarget.CHECKOUT,)))

    failed = await checkout(api, organization_id, "tab-2")
    standin.state.set_faults(FaultPlan())
    retried = await checkout(api, organization_id, "tab-2")

    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "stripe_unavailable"
    assert retried.status_code == 201, retried.text
    assert open_sessions(standin) == [retried.json()["id"]]
    assert standin.state.checkout_sessions[first.json()["id"]].status == "expired"
