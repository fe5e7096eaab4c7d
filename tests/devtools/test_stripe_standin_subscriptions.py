"""Subscriptions through the official SDK: read, listed, updated, canceled; invoices read."""

from __future__ import annotations

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import FaultPlan, FaultTarget, StandinState
from tests.devtools.helpers import BillingCatalog, Receiver, control_post, subscribe

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


async def test_subscriptions_are_listed_by_customer_without_the_canceled_ones(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    first = (await subscribe(client, catalog, control))["subscription"]
    second = (await subscribe(client, catalog, control))["subscription"]
    await client.v1.subscriptions.cancel_async(second["id"])

    mine = await client.v1.subscriptions.list_async({"customer": first["customer"]})
    live = await client.v1.subscriptions.list_async()
    every = await client.v1.subscriptions.list_async({"status": "all"})
    canceled = await client.v1.subscriptions.list_async({"status": "canceled"})

    assert [s.id for s in mine.data] == [first["id"]]
    assert [s.id for s in live.data] == [first["id"]]
    assert [s.id for s in every.data] == [second["id"], first["id"]]
    assert [s.id for s in canceled.data] == [second["id"]]


async def test_an_unknown_status_filter_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.subscriptions.list_async({"status": "sleeping"})

    assert refused.value.param == "status"


async def test_an_unknown_subscription_is_not_found(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.subscriptions.retrieve_async("sub_missing")

    assert (refused.value.http_status, refused.value.code) == (404, "resource_missing")


async def test_cancel_at_period_end_and_metadata_are_updated_and_sent_as_an_update(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]

    updated = await client.v1.subscriptions.update_async(
        subscription["id"], {"cancel_at_period_end": True, "metadata": {"plan": "pro"}}
    )
    await control.post("/webhook_deliveries/settle")

    period_end = subscription["items"]["data"][0]["current_period_end"]
    assert (updated.status, updated.cancel_at_period_end, updated.cancel_at) == (
        "active",
        True,
        period_end,
    )
    event = webhook_receiver.events()[-1]
    assert event["type"] == "customer.subscription.updated"
    assert event["data"]["object"]["cancel_at_period_end"] is True
    assert event["data"]["previous_attributes"]["cancel_at_period_end"] is False
    assert event["data"]["previous_attributes"]["metadata"] == {"plan": None}


async def test_canceling_ends_the_subscription_now_and_sends_deleted(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    state: StandinState,
    webhook_receiver: Receiver,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]

    canceled = await client.v1.subscriptions.cancel_async(subscription["id"])
    await control.post("/webhook_deliveries/settle")

    now = int(state.clock.now())
    assert canceled.status == "canceled"
    assert canceled.canceled_at == canceled.ended_at
    assert canceled.ended_at is not None
    assert now - 1 <= canceled.ended_at <= now
    assert canceled.cancellation_details is not None
    assert canceled.cancellation_details.reason == "cancellation_requested"
    event = webhook_receiver.events()[-1]
    assert (event["type"], event["data"]["object"]["status"]) == (
        "customer.subscription.deleted",
        "canceled",
    )


async def test_canceling_a_canceled_subscription_is_not_found(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    await client.v1.subscriptions.cancel_async(subscription["id"])

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.subscriptions.cancel_async(subscription["id"])

    assert refused.value.code == "resource_missing"


async def test_a_canceled_subscription_only_updates_its_metadata(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    await client.v1.subscriptions.cancel_async(subscription["id"])

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.subscriptions.update_async(
            subscription["id"], {"cancel_at_period_end": True}
        )
    noted = await client.v1.subscriptions.update_async(
        subscription["id"], {"metadata": {"note": "left"}}
    )

    assert refused.value.user_message == (
        "A canceled subscription can only update its cancellation_details and metadata."
    )
    assert noted.metadata is not None
    assert noted.metadata.to_dict() == {"note": "left"}


async def test_an_injected_failure_on_reading_a_subscription_is_a_500(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    state: StandinState,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    state.set_faults(FaultPlan(server_error=1.0, targets=(FaultTarget.SUBSCRIPTIONS,)))

    with pytest.raises(stripe.APIError) as failed:
        await client.v1.subscriptions.retrieve_async(subscription["id"])

    assert failed.value.http_status == 500


async def test_a_renewal_invoice_is_read_back_by_id(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    renewal = await control_post(control, f"/subscriptions/{subscription['id']}/payment_succeeded")

    invoice = await client.v1.invoices.retrieve_async(renewal["invoice"]["id"])

    assert (invoice.status, invoice.customer) == ("paid", subscription["customer"])
    assert invoice.parent is not None
    assert invoice.parent.subscription_details is not None
    assert invoice.parent.subscription_details.subscription == subscription["id"]


async def test_an_unknown_invoice_is_not_found(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.invoices.retrieve_async("in_missing")

    assert refused.value.http_status == 404
