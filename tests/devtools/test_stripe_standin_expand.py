"""`expand[]` through the SDK: ids answered as objects where the stand-in holds them, and
refused (not ignored) where it cannot."""

from __future__ import annotations

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import StandinState
from tests.devtools.helpers import BillingCatalog, control_post, open_session, subscribe

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


async def test_a_completed_session_read_with_its_subscription_expanded(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    session = await open_session(client, catalog)
    await control_post(control, f"/checkout_sessions/{session.id}/complete")

    read = await client.v1.checkout.sessions.retrieve_async(
        session.id, {"expand": ["subscription", "customer"]}
    )

    assert isinstance(read.subscription, stripe.Subscription)
    assert isinstance(read.customer, stripe.Customer)
    assert (read.subscription.status, read.subscription.customer) == ("active", read.customer.id)


async def test_a_subscription_read_with_its_latest_invoice_and_that_invoices_customer(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    renewal = await control_post(control, f"/subscriptions/{subscription['id']}/payment_failed")

    read = await client.v1.subscriptions.retrieve_async(
        subscription["id"], {"expand": ["latest_invoice.customer"]}
    )

    assert isinstance(read.latest_invoice, stripe.Invoice)
    assert read.latest_invoice.id == renewal["invoice"]["id"]
    assert isinstance(read.latest_invoice.customer, stripe.Customer)
    assert read.latest_invoice.customer.id == subscription["customer"]


async def test_a_list_expands_under_data_and_refuses_a_path_without_it(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]

    listed = await client.v1.subscriptions.list_async({"expand": ["data.customer"]})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.subscriptions.list_async({"expand": ["customer"]})

    [read] = listed.data
    assert isinstance(read.customer, stripe.Customer)
    assert read.customer.id == subscription["customer"]
    assert refused.value.user_message == (
        "This property cannot be expanded (customer). "
        "You may want to try expanding 'data.customer' instead."
    )


async def test_a_create_answers_with_what_it_was_asked_to_expand(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})

    session = await open_session(client, catalog, customer=customer.id, expand=["customer"])

    assert isinstance(session.customer, stripe.Customer)
    assert session.customer.name == "Cold Chain"


async def test_a_field_the_stand_in_cannot_expand_is_refused_naming_it(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    session = await open_session(client, catalog)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.checkout.sessions.retrieve_async(session.id, {"expand": ["line_items"]})

    assert (refused.value.http_status, refused.value.param) == (400, "expand[0]")
    assert "line_items" in str(refused.value.user_message)


async def test_a_create_asking_for_an_expansion_the_stand_in_cannot_answer_makes_nothing(
    client: stripe.StripeClient, catalog: BillingCatalog, state: StandinState
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await open_session(client, catalog, expand=["line_items"])

    assert refused.value.param == "expand[0]"
    assert state.checkout_sessions == {}
