"""Billing Portal sessions through the official SDK."""

from __future__ import annotations

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import FaultPlan, FaultTarget, StandinState

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)

RETURN_URL = "https://app.example/settings/billing"


async def test_a_portal_session_answers_its_url_customer_and_return_url(
    client: stripe.StripeClient, state: StandinState
) -> None:
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})
    now = int(state.clock.now())

    session = await client.v1.billing_portal.sessions.create_async(
        {"customer": customer.id, "return_url": RETURN_URL}
    )

    assert session.id.startswith("bps_")
    assert (session.object, session.customer, session.return_url) == (
        "billing_portal.session",
        customer.id,
        RETURN_URL,
    )
    assert str(session.configuration).startswith("bpc_")
    assert now <= session.created <= now + 1
    async with httpx.AsyncClient() as browser:
        page = await browser.get(session.url)
    assert page.status_code == 200
    assert RETURN_URL in page.text


async def test_a_portal_session_for_an_unknown_customer_is_refused(
    client: stripe.StripeClient, state: StandinState
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.billing_portal.sessions.create_async({"customer": "cus_nobody"})

    assert (refused.value.code, refused.value.param) == ("resource_missing", "customer")
    assert state.portal_sessions == {}


async def test_a_portal_session_for_a_deleted_customer_is_refused(
    client: stripe.StripeClient,
) -> None:
    customer = await client.v1.customers.create_async({"name": "Gone"})
    await client.v1.customers.delete_async(customer.id)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.billing_portal.sessions.create_async({"customer": customer.id})

    assert refused.value.param == "customer"


async def test_a_portal_session_without_a_customer_is_refused(raw: httpx.AsyncClient) -> None:
    answer = await raw.post("/v1/billing_portal/sessions", data={"return_url": RETURN_URL})

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "parameter_missing"
    assert answer.json()["error"]["param"] == "customer"


async def test_a_return_url_that_is_not_a_url_is_refused(client: stripe.StripeClient) -> None:
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.billing_portal.sessions.create_async(
            {"customer": customer.id, "return_url": "settings"}
        )

    assert (refused.value.code, refused.value.param) == ("url_invalid", "return_url")


async def test_an_injected_server_error_makes_no_portal_session(
    client: stripe.StripeClient, state: StandinState
) -> None:
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})
    state.set_faults(FaultPlan(server_error=1.0, targets=(FaultTarget.BILLING_PORTAL,)))

    with pytest.raises(stripe.APIError):
        await client.v1.billing_portal.sessions.create_async({"customer": customer.id})

    assert state.portal_sessions == {}


async def test_portal_sessions_show_in_the_state_until_reset(
    client: stripe.StripeClient, control: httpx.AsyncClient
) -> None:
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})
    session = await client.v1.billing_portal.sessions.create_async({"customer": customer.id})

    before = (await control.get("/state")).json()["billing_portal_sessions"]
    await control.post("/reset")

    assert [s["id"] for s in before] == [session.id]
    assert (await control.get("/state")).json()["billing_portal_sessions"] == []
