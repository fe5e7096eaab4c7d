"""What a snapshot event says changed (`data.previous_attributes`), as Stripe's recorded events
show it: only the keys that changed, hashes key by key, arrays whole, and only on `*.updated`."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.devtools.helpers import BillingCatalog, Receiver, control_post, subscribe

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


async def test_an_added_metadata_key_is_the_only_change_and_shows_as_null(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    subscription = (
        await subscribe(
            client, catalog, control, subscription_data={"metadata": {"organization_id": "org-1"}}
        )
    )["subscription"]

    await client.v1.subscriptions.update_async(subscription["id"], {"metadata": {"plan": "pro"}})
    await control.post("/webhook_deliveries/settle")

    updated = webhook_receiver.events()[-1]
    assert updated["type"] == "customer.subscription.updated"
    assert updated["data"]["previous_attributes"] == {"metadata": {"plan": None}}


async def test_a_removed_metadata_key_shows_its_earlier_value(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    subscription = (
        await subscribe(
            client,
            catalog,
            control,
            subscription_data={"metadata": {"organization_id": "org-1", "plan": "pro"}},
        )
    )["subscription"]

    await client.v1.subscriptions.update_async(subscription["id"], {"metadata": {"plan": ""}})
    await control.post("/webhook_deliveries/settle")

    assert webhook_receiver.events()[-1]["data"]["previous_attributes"] == {
        "metadata": {"plan": "pro"}
    }


async def test_a_renewal_shows_the_items_earlier_list_whole_and_leaves_the_rest_out(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]

    await control_post(control, f"/subscriptions/{subscription['id']}/payment_succeeded")

    moved = webhook_receiver.events()[-1]
    assert moved["type"] == "customer.subscription.updated"
    assert moved["data"]["previous_attributes"] == {
        "items": {"data": subscription["items"]["data"]},
        "latest_invoice": None,
    }


async def test_a_deleted_subscription_event_carries_no_previous_attributes(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]

    await client.v1.subscriptions.cancel_async(subscription["id"])
    await control.post("/webhook_deliveries/settle")

    deleted = webhook_receiver.events()[-1]
    assert deleted["type"] == "customer.subscription.deleted"
    assert "previous_attributes" not in deleted["data"]


async def test_an_event_made_by_an_api_call_names_its_request_and_idempotency_key(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]

    updated = await client.v1.subscriptions.update_async(
        subscription["id"], {"metadata": {"plan": "pro"}}, {"idempotency_key": "plan-pro-1"}
    )
    await control.post("/webhook_deliveries/settle")

    assert updated.last_response is not None
    assert webhook_receiver.events()[-1]["request"] == {
        "id": updated.last_response.request_id,
        "idempotency_key": "plan-pro-1",
    }


async def test_an_event_stripe_makes_by_itself_names_no_request(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]

    await control_post(control, f"/subscriptions/{subscription['id']}/payment_failed")

    assert [e["request"] for e in webhook_receiver.events()] == [
        {"id": None, "idempotency_key": None}
    ] * len(webhook_receiver.events())


async def test_an_event_read_back_counts_the_endpoints_still_waiting_for_it(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    webhook_receiver.statuses = [500]
    await subscribe(client, catalog, control)
    failed, delivered = [e["id"] for e in webhook_receiver.events()[:2]]

    waiting = await client.v1.events.retrieve_async(failed)
    done = await client.v1.events.retrieve_async(delivered)
    await control.post("/webhook_deliveries")
    retried = await client.v1.events.retrieve_async(failed)

    # As sent, each event still waited for its one endpoint.
    assert [e["pending_webhooks"] for e in webhook_receiver.events()[:2]] == [1, 1]
    assert (waiting.pending_webhooks, done.pending_webhooks, retried.pending_webhooks) == (1, 0, 0)
