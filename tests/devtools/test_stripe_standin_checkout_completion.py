"""Completing a Checkout Session through the control API: the subscription, and the signed
snapshot events delivered to the registered webhook endpoint."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import StandinState
from tests.devtools.helpers import WEBHOOK_SECRET, BillingCatalog, Receiver, open_session

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


async def complete(
    control: httpx.AsyncClient, session_id: str, *, deliver: bool = True
) -> dict[str, Any]:
    answer = await control.post(
        f"/checkout_sessions/{session_id}/complete", json={"deliver": deliver}
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def test_completing_a_session_starts_an_active_subscription_with_its_line_items(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    state: StandinState,
) -> None:
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})
    session = await open_session(
        client,
        catalog,
        customer=customer.id,
        line_items=[
            {"price": catalog.metered_price},
            {"price": catalog.licensed_price, "quantity": 2},
        ],
        subscription_data={"metadata": {"organization_id": "org-1"}},
    )
    now = int(state.clock.now())

    await complete(control, session.id)

    completed = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert (completed.status, completed.payment_status, completed.url) == ("complete", "paid", None)
    assert completed.subscription is not None
    subscription = await client.v1.subscriptions.retrieve_async(str(completed.subscription))
    assert (subscription.status, subscription.customer) == ("active", customer.id)
    assert subscription.metadata is not None
    assert subscription.metadata.to_dict() == {"organization_id": "org-1"}
    metered, licensed = subscription["items"].data
    assert (metered.price.id, licensed.price.id) == (catalog.metered_price, catalog.licensed_price)
    assert ("quantity" in metered, licensed.quantity) == (False, 2)
    assert now <= metered.current_period_start <= now + 1
    assert 28 * 86400 <= metered.current_period_end - metered.current_period_start <= 31 * 86400


async def test_completing_delivers_signed_session_then_subscription_snapshots(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})
    session = await open_session(client, catalog, customer=customer.id)

    result = await complete(control, session.id)

    assert [d["status"] for d in result["deliveries"]] == [200, 200]
    verified = [
        stripe.Webhook.construct_event(body.decode(), signature, WEBHOOK_SECRET)
        for body, signature in webhook_receiver.deliveries
    ]
    assert [e.type for e in verified] == [
        "checkout.session.completed",
        "customer.subscription.created",
    ]
    assert [e.id for e in verified] == result["events"]
    completed, created = webhook_receiver.events()
    assert {k: completed[k] for k in ("object", "livemode", "api_version")} == {
        "object": "event",
        "livemode": False,
        "api_version": "2025-03-31.basil",
    }
    assert completed["data"]["object"] == result["checkout_session"]
    assert created["data"]["object"] == result["subscription"]
    assert created["data"]["object"]["items"]["data"][0]["current_period_end"] > 0


async def test_the_events_a_session_made_are_fetched_by_id_with_their_snapshots(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    raw: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    session = await open_session(client, catalog)
    result = await complete(control, session.id)

    fetched = [(await raw.get(f"/v1/events/{event_id}")).json() for event_id in result["events"]]

    # Delivered, an event waits for no endpoint any more: pending_webhooks 0 (was 1 as sent).
    assert fetched == [{**e, "pending_webhooks": 0} for e in webhook_receiver.events()]
    assert (await client.v1.events.retrieve_async(result["events"][0])).type == "customer.created"


async def test_a_session_without_a_customer_makes_one_and_sends_customer_created_first(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    session = await open_session(client, catalog)

    result = await complete(control, session.id)

    customer_id = result["checkout_session"]["customer"]
    assert (await client.v1.customers.retrieve_async(customer_id)).id == customer_id
    assert [e["type"] for e in webhook_receiver.events()] == [
        "customer.created",
        "checkout.session.completed",
        "customer.subscription.created",
    ]
    assert result["subscription"]["customer"] == customer_id


async def test_a_session_is_completed_once(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    session = await open_session(client, catalog)
    await complete(control, session.id)

    again = await control.post(f"/checkout_sessions/{session.id}/complete", json={})

    assert again.status_code == 409
    assert "complete, not open" in again.json()["error"]["message"]


async def test_an_expired_session_cannot_be_completed(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    state: StandinState,
) -> None:
    session = await open_session(client, catalog)
    await client.v1.checkout.sessions.expire_async(session.id)

    refused = await control.post(f"/checkout_sessions/{session.id}/complete", json={})

    assert refused.status_code == 409
    assert state.subscriptions == {}


async def test_completing_an_unknown_session_is_not_found(control: httpx.AsyncClient) -> None:
    answer = await control.post("/checkout_sessions/cs_test_nothing/complete", json={})

    assert answer.status_code == 404


async def test_events_kept_back_are_sent_later_in_the_order_asked(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})
    session = await open_session(client, catalog, customer=customer.id)
    result = await complete(control, session.id, deliver=False)
    assert (result["deliveries"], webhook_receiver.deliveries) == ([], [])
    completed_id, created_id = result["events"]

    sent = await control.post("/webhook_deliveries", json={"event_ids": [created_id, completed_id]})

    assert [d["event_id"] for d in sent.json()["deliveries"]] == [created_id, completed_id]
    assert [e["id"] for e in webhook_receiver.events()] == [created_id, completed_id]


async def test_a_failed_delivery_is_kept_and_sent_again_until_it_succeeds(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    webhook_receiver.statuses = [500]
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})
    session = await open_session(client, catalog, customer=customer.id)
    result = await complete(control, session.id)
    assert [d["status"] for d in result["deliveries"]] == [500, 200]

    retried = (await control.post("/webhook_deliveries")).json()["deliveries"]
    nothing_left = (await control.post("/webhook_deliveries")).json()["deliveries"]

    assert [(d["event_id"], d["status"]) for d in retried] == [(result["events"][0], 200)]
    assert nothing_left == []
    failed = await client.v1.events.list_async({"delivery_success": False})
    assert failed.data == []


async def test_an_event_that_failed_delivery_is_listed_as_undelivered(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    webhook_receiver.statuses = [400]
    session = await open_session(client, catalog)
    result = await complete(control, session.id)

    failed = await client.v1.events.list_async({"delivery_success": False})

    assert [e.id for e in failed.data] == [result["events"][0]]


async def test_the_state_shows_sessions_subscriptions_and_events_until_reset(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    session = await open_session(client, catalog)
    await complete(control, session.id)

    before = (await control.get("/state")).json()
    await control.post("/reset")
    after = (await control.get("/state")).json()

    assert [len(before[k]) for k in ("checkout_sessions", "subscriptions", "webhook_events")] == [
        1,
        1,
        3,
    ]
    assert len(before["webhook_deliveries"]) == 3
    assert "secret" not in before["webhook_endpoints"][0]
    keys = ("checkout_sessions", "subscriptions", "webhook_endpoints", "webhook_events")
    assert [after[k] for k in keys] == [[], [], [], []]


async def test_the_hosted_page_pays_the_session_and_returns_to_the_success_url(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    session = await open_session(client, catalog)
    assert session.url is not None
    async with httpx.AsyncClient() as browser:
        page = await browser.get(session.url)
        paid = await browser.post(session.url)

    assert page.status_code == 200
    assert "Pay" in page.text
    assert paid.status_code == 303
    assert paid.headers["location"] == f"https://app.example/billing/done?session={session.id}"
    await control.post("/webhook_deliveries/settle")
    assert (await client.v1.checkout.sessions.retrieve_async(session.id)).status == "complete"


async def test_a_completed_session_names_the_customer_who_paid(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    customer = await client.v1.customers.create_async(
        {"name": "Cold Chain", "email": "billing@coldchain.example"}
    )
    session = await open_session(client, catalog, customer=customer.id)
    assert session.customer_details is None

    await complete(control, session.id)

    completed = await client.v1.checkout.sessions.retrieve_async(session.id)
    assert completed.customer_details is not None
    assert (
        completed.customer_details.email,
        completed.customer_details.name,
        completed.customer_details.tax_exempt,
    ) == ("billing@coldchain.example", "Cold Chain", "none")
