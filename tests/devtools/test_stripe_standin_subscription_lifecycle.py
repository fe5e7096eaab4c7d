"""What happens over time, made to happen now: failed and recovered payments, unpaid, the end,
and two events of one subscription in the same second."""

from __future__ import annotations

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import StandinState
from tests.devtools.helpers import BillingCatalog, Receiver, control_post, subscribe

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


async def test_a_failed_renewal_leaves_an_open_invoice_and_the_subscription_past_due(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    state: StandinState,
    webhook_receiver: Receiver,
) -> None:
    started = await subscribe(client, catalog, control)
    subscription = started["subscription"]
    first_period_end = subscription["items"]["data"][0]["current_period_end"]

    failed = await control_post(control, f"/subscriptions/{subscription['id']}/payment_failed")

    invoice = failed["invoice"]
    assert (invoice["status"], invoice["attempted"], invoice["attempt_count"]) == ("open", True, 1)
    assert (invoice["period_start"], invoice["period_end"]) == (
        subscription["items"]["data"][0]["current_period_start"],
        first_period_end,
    )
    assert invoice["next_payment_attempt"] > first_period_end
    now = await client.v1.subscriptions.retrieve_async(subscription["id"])
    assert now.status == "past_due"
    assert now.latest_invoice == invoice["id"]
    assert now["items"].data[0].current_period_start == first_period_end
    assert state.clock.now() >= first_period_end
    sent = webhook_receiver.events()[len(started["events"]) :]
    assert [e["type"] for e in sent] == ["invoice.payment_failed", "customer.subscription.updated"]
    assert sent[1]["data"]["previous_attributes"]["status"] == "active"


async def test_another_failed_attempt_counts_on_the_same_invoice(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    path = f"/subscriptions/{subscription['id']}/payment_failed"
    first = await control_post(control, path)

    second = await control_post(control, path)

    assert second["invoice"]["id"] == first["invoice"]["id"]
    assert second["invoice"]["attempt_count"] == 2
    # The subscription was past_due already: only the invoice event is sent.
    assert len(second["events"]) == 1


async def test_a_payment_after_a_failure_pays_the_invoice_and_makes_the_subscription_active(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    failed = await control_post(control, f"/subscriptions/{subscription['id']}/payment_failed")

    paid = await control_post(control, f"/subscriptions/{subscription['id']}/payment_succeeded")

    invoice = await client.v1.invoices.retrieve_async(failed["invoice"]["id"])
    assert (invoice.status, invoice.attempt_count, invoice.amount_paid) == (
        "paid",
        2,
        invoice.amount_due,
    )
    assert invoice.status_transitions.paid_at is not None
    assert paid["subscription"]["status"] == "active"
    sent = [e["type"] for e in webhook_receiver.events()[-2:]]
    assert sent == ["invoice.paid", "customer.subscription.updated"]


async def test_a_renewal_that_is_paid_moves_the_period_and_stays_active(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    item = subscription["items"]["data"][0]

    renewed = await control_post(control, f"/subscriptions/{subscription['id']}/payment_succeeded")

    renewed_item = renewed["subscription"]["items"]["data"][0]
    assert renewed["subscription"]["status"] == "active"
    assert renewed_item["current_period_start"] == item["current_period_end"]
    assert renewed["invoice"]["status"] == "paid"
    paid, moved = webhook_receiver.events()[-2:]
    assert (paid["type"], moved["type"]) == ("invoice.paid", "customer.subscription.updated")
    assert "status" not in moved["data"]["previous_attributes"]
    assert moved["data"]["previous_attributes"]["items"] == {"data": subscription["items"]["data"]}


async def test_retries_running_out_mark_the_subscription_unpaid(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    await control_post(control, f"/subscriptions/{subscription['id']}/payment_failed")

    unpaid = await control_post(control, f"/subscriptions/{subscription['id']}/unpaid")

    assert unpaid["subscription"]["status"] == "unpaid"
    assert (unpaid["invoice"]["status"], unpaid["invoice"]["next_payment_attempt"]) == (
        "open",
        None,
    )


async def test_unpaid_needs_a_failed_payment_first(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]

    refused = await control.post(f"/subscriptions/{subscription['id']}/unpaid", json={})

    assert refused.status_code == 409


async def test_retries_running_out_can_cancel_the_subscription(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    await control_post(control, f"/subscriptions/{subscription['id']}/payment_failed")

    ended = await control_post(control, f"/subscriptions/{subscription['id']}/cancel")

    assert ended["subscription"]["status"] == "canceled"
    assert ended["subscription"]["cancellation_details"]["reason"] == "payment_failed"
    assert webhook_receiver.events()[-1]["type"] == "customer.subscription.deleted"


async def test_a_subscription_set_to_cancel_at_period_end_ends_at_that_end(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    state: StandinState,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    await client.v1.subscriptions.update_async(subscription["id"], {"cancel_at_period_end": True})
    period_end = subscription["items"]["data"][0]["current_period_end"]

    ended = await control_post(control, f"/subscriptions/{subscription['id']}/cancel")

    assert ended["subscription"]["ended_at"] == period_end
    assert ended["subscription"]["cancellation_details"]["reason"] == "cancellation_requested"


async def test_a_canceled_subscription_takes_no_more_payments(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    await client.v1.subscriptions.cancel_async(subscription["id"])

    refused = await control.post(f"/subscriptions/{subscription['id']}/payment_succeeded", json={})

    assert refused.status_code == 409


async def test_two_changes_in_one_second_carry_their_own_snapshots_and_get_shows_the_last(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    await control_post(control, "/clock", {"freeze": True})
    failed = await control_post(
        control, f"/subscriptions/{subscription['id']}/payment_failed", {"deliver": False}
    )
    recovered = await control_post(
        control, f"/subscriptions/{subscription['id']}/payment_succeeded", {"deliver": False}
    )
    await control_post(control, "/clock", {"freeze": False})
    past_due_event, active_event = failed["events"][1], recovered["events"][1]
    already_sent = len(webhook_receiver.deliveries)

    # The newer one first: a receiver sees the tie, and must ask Stripe what is true now.
    await control_post(
        control, "/webhook_deliveries", {"event_ids": [active_event, past_due_event]}
    )

    first, second = webhook_receiver.events()[already_sent:]
    assert [first["id"], second["id"]] == [active_event, past_due_event]
    assert first["created"] == second["created"]
    assert first["type"] == second["type"] == "customer.subscription.updated"
    assert first["data"]["object"]["status"] == "active"
    assert second["data"]["object"]["status"] == "past_due"
    now = await client.v1.subscriptions.retrieve_async(subscription["id"])
    assert now.status == "active"


async def test_the_clock_can_be_frozen_and_let_go(
    control: httpx.AsyncClient, state: StandinState
) -> None:
    frozen = await control_post(control, "/clock", {"freeze": True})
    moved = await control_post(control, "/clock", {"advance_seconds": 60})
    released = await control_post(control, "/clock", {"freeze": False})

    assert frozen["frozen"] is True
    assert moved["now"] == frozen["now"] + 60
    assert released["frozen"] is False
    assert state.clock.now() >= moved["now"]


async def test_get_answers_what_the_newest_event_of_the_object_carries(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    raw: httpx.AsyncClient,
) -> None:
    # A receiver that cannot order two events of one second fetches the object and reads it as
    # it reads an event's `data.object`: the two must have one shape.
    subscription = (await subscribe(client, catalog, control))["subscription"]
    await control_post(control, "/clock", {"freeze": True})
    failed = await control_post(control, f"/subscriptions/{subscription['id']}/payment_failed")
    paid = await control_post(control, f"/subscriptions/{subscription['id']}/payment_succeeded")
    await control_post(control, "/clock", {"freeze": False})
    paid_invoice, active = [(await raw.get(f"/v1/events/{i}")).json() for i in paid["events"]]

    got_subscription = await raw.get(f"/v1/subscriptions/{subscription['id']}")
    got_invoice = await raw.get(f"/v1/invoices/{failed['invoice']['id']}")

    assert (got_subscription.status_code, got_invoice.status_code) == (200, 200)
    assert paid_invoice["type"] == "invoice.paid"
    assert active["type"] == "customer.subscription.updated"
    assert got_subscription.json() == active["data"]["object"]
    assert got_invoice.json() == paid_invoice["data"]["object"]
