"""The billing objects the stand-in answers carry the fields Stripe's do: every field the SDK
(stripe 16.1) types as always present, and every field Stripe's recorded objects of that kind
have that the SDK still knows. A missing one is an AttributeError in the product's code."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe
from stripe import billing_portal, checkout

from tests.devtools.helpers import BillingCatalog, control_post, open_session
from tests.devtools.shapes import missing_required_fields, recorded_fields_missing, recorded_object

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)

BASIL_INVOICE = "zulip__invoice.finalized__n1.json"  # 2025-04-30.basil
BASIL_ERA_SESSION = "supabase-sync__checkout.session.completed__evt_T8nSaZqtPudigUMqnnbY4D4v.json"
SUBSCRIPTIONS = (
    "supabase-sync__customer.subscription.created__evt_1J02NfJDPojXS6LNawmt1X8q.json",
    "stripe-ruby-mock__customer.subscription.created__n1.json",
)


@pytest.fixture
async def billing_objects(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> dict[str, dict[str, Any]]:
    """One of each billing object, as the API answers it to the SDK."""
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})
    session = await open_session(
        client,
        catalog,
        customer=customer.id,
        line_items=[
            {"price": catalog.metered_price},
            {"price": catalog.licensed_price, "quantity": 2},
        ],
    )
    completed = await control_post(control, f"/checkout_sessions/{session.id}/complete")
    subscription_id = completed["subscription"]["id"]
    renewal = await control_post(control, f"/subscriptions/{subscription_id}/payment_failed")
    endpoint = await client.v1.webhook_endpoints.create_async(
        {"url": "https://app.example/webhooks/stripe", "enabled_events": ["*"]}
    )
    answers: dict[str, stripe.StripeObject] = {
        "open session": session,
        "completed session": await client.v1.checkout.sessions.retrieve_async(session.id),
        "subscription": await client.v1.subscriptions.retrieve_async(subscription_id),
        "invoice": await client.v1.invoices.retrieve_async(renewal["invoice"]["id"]),
        "preview": await client.v1.invoices.create_preview_async({"subscription": subscription_id}),
        "portal session": await client.v1.billing_portal.sessions.create_async(
            {"customer": customer.id}
        ),
        "webhook endpoint": endpoint,
        "event": await client.v1.events.retrieve_async(renewal["events"][0]),
    }
    return {name: answer.to_dict() for name, answer in answers.items()}


SDK_CLASSES: dict[str, type[stripe.StripeObject]] = {
    "open session": checkout.Session,
    "completed session": checkout.Session,
    "subscription": stripe.Subscription,
    "invoice": stripe.Invoice,
    "preview": stripe.Invoice,
    "portal session": billing_portal.Session,
    "webhook endpoint": stripe.WebhookEndpoint,
    "event": stripe.Event,
}


@pytest.mark.parametrize("name", list(SDK_CLASSES))
async def test_an_object_has_every_field_the_sdk_types_as_always_present(
    billing_objects: dict[str, dict[str, Any]], name: str
) -> None:
    assert missing_required_fields(SDK_CLASSES[name], billing_objects[name]) == []


@pytest.mark.parametrize("name", ["invoice", "preview"])
async def test_an_invoice_has_the_fields_of_a_recorded_basil_invoice(
    billing_objects: dict[str, dict[str, Any]], name: str
) -> None:
    recorded = recorded_object(BASIL_INVOICE)
    invoice = billing_objects[name]

    assert recorded_fields_missing(stripe.Invoice, recorded, invoice) == []
    for line in invoice["lines"]["data"]:
        assert (
            recorded_fields_missing(stripe.InvoiceLineItem, recorded["lines"]["data"][0], line)
            == []
        )


async def test_a_session_has_the_fields_of_a_recorded_basil_era_session(
    billing_objects: dict[str, dict[str, Any]],
) -> None:
    recorded = recorded_object(BASIL_ERA_SESSION)

    for name in ("open session", "completed session"):
        assert recorded_fields_missing(checkout.Session, recorded, billing_objects[name]) == []


@pytest.mark.parametrize("recorded_file", SUBSCRIPTIONS)
async def test_a_subscription_and_its_items_have_the_fields_of_recorded_ones(
    billing_objects: dict[str, dict[str, Any]], recorded_file: str
) -> None:
    recorded = recorded_object(recorded_file)
    subscription = billing_objects["subscription"]
    metered, licensed = subscription["items"]["data"]
    recorded_item = recorded["items"]["data"][0]

    assert recorded_fields_missing(stripe.Subscription, recorded, subscription) == []
    assert recorded_fields_missing(stripe.SubscriptionItem, recorded_item, licensed) == []
    # A metered item has no quantity: usage decides what it bills.
    assert recorded_fields_missing(stripe.SubscriptionItem, recorded_item, metered) == ["quantity"]
