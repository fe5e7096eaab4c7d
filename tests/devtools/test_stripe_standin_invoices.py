"""Invoices and previews read through the SDK, against Stripe's invoice object (basil)."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
import stripe

from tests.devtools.helpers import BillingCatalog, control_post, send_event, subscribe

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)

ORGANIZATION = {"organization_id": "org-1"}


async def test_a_renewal_invoice_keeps_the_subscriptions_metadata_as_it_was_when_made(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (
        await subscribe(client, catalog, control, subscription_data={"metadata": ORGANIZATION})
    )["subscription"]
    renewal = await control_post(control, f"/subscriptions/{subscription['id']}/payment_failed")
    await client.v1.subscriptions.update_async(subscription["id"], {"metadata": {"plan": "pro"}})

    invoice = await client.v1.invoices.retrieve_async(renewal["invoice"]["id"])

    assert renewal["invoice"]["parent"]["subscription_details"]["metadata"] == ORGANIZATION
    assert invoice.parent is not None
    assert invoice.parent.subscription_details is not None
    assert invoice.parent.subscription_details.metadata is not None
    assert invoice.parent.subscription_details.metadata.to_dict() == ORGANIZATION


async def test_a_preview_carries_the_subscriptions_current_metadata(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (
        await subscribe(client, catalog, control, subscription_data={"metadata": ORGANIZATION})
    )["subscription"]
    await client.v1.subscriptions.update_async(subscription["id"], {"metadata": {"plan": "pro"}})

    preview = await client.v1.invoices.create_preview_async({"subscription": subscription["id"]})

    assert preview.parent is not None
    assert preview.parent.subscription_details is not None
    assert preview.parent.subscription_details.metadata is not None
    assert preview.parent.subscription_details.metadata.to_dict() == {**ORGANIZATION, "plan": "pro"}


async def test_fractional_usage_bills_exactly_and_shows_a_whole_quantity_beside_the_exact_one(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    start = subscription["items"]["data"][0]["current_period_start"]
    for value in ("1.5", "1"):
        await send_event(
            client,
            customer=subscription["customer"],
            value=value,
            event_name="temperature_readings",
            timestamp=start,
        )

    preview = await client.v1.invoices.create_preview_async({"subscription": subscription["id"]})

    [line] = preview.lines.data
    # 2.5 readings at 0.5 cents: 1.25, rounded to 1.
    assert (line.quantity, line.quantity_decimal, line.amount) == (2, Decimal("2.5"), 1)
