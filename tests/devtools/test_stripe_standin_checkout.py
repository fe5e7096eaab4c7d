"""Checkout Sessions through the official SDK: created, refused as Stripe refuses, expired."""

from __future__ import annotations

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import FaultPlan, FaultTarget, StandinState
from tests.devtools.helpers import SUCCESS_URL, BillingCatalog, open_session

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)

DAY = 24 * 3600


async def test_a_subscription_session_opens_with_a_url_and_what_it_was_given(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})

    session = await open_session(
        client,
        catalog,
        customer=customer.id,
        cancel_url="https://app.example/billing",
        client_reference_id="org-1",
        metadata={"organization_id": "org-1"},
        subscription_data={"metadata": {"organization_id": "org-1"}},
    )

    assert session.id.startswith("cs_test_")
    assert (session.object, session.status, session.mode) == (
        "checkout.session",
        "open",
        "subscription",
    )
    assert str(session.url).endswith(f"/c/pay/{session.id}")
    assert (session.customer, session.client_reference_id) == (customer.id, "org-1")
    assert session.success_url == SUCCESS_URL
    assert session.metadata is not None
    assert session.metadata.to_dict() == {"organization_id": "org-1"}
    assert session.expires_at == session.created + DAY
    assert (session.subscription, session.payment_status) == (None, "unpaid")


async def test_a_session_is_read_back_by_id(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    session = await open_session(client, catalog)

    fetched = await client.v1.checkout.sessions.retrieve_async(session.id)

    assert fetched.to_dict() == session.to_dict()


async def test_an_unknown_session_is_not_found(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.checkout.sessions.retrieve_async("cs_test_missing")

    assert (refused.value.http_status, refused.value.code) == (404, "resource_missing")


async def test_licensed_line_items_are_charged_at_checkout_and_metered_ones_later(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    session = await open_session(
        client,
        catalog,
        line_items=[
            {"price": catalog.metered_price},
            {"price": catalog.licensed_price, "quantity": 3},
        ],
    )

    assert (session.amount_total, session.currency) == (1500, "eur")


@pytest.mark.parametrize(
    ("missing", "param"),
    [("mode", "mode"), ("success_url", "success_url"), ("line_items", "line_items")],
)
async def test_a_session_missing_a_required_parameter_is_refused_naming_it(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    state: StandinState,
    missing: str,
    param: str,
) -> None:
    params = {
        "mode": "subscription",
        "success_url": SUCCESS_URL,
        "line_items": [{"price": catalog.metered_price}],
    }
    del params[missing]

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.checkout.sessions.create_async(params)  # type: ignore[arg-type]

    assert (refused.value.code, refused.value.param) == ("parameter_missing", param)
    assert state.checkout_sessions == {}


async def test_a_success_url_that_is_not_a_url_is_refused(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await open_session(client, catalog, success_url="not a url")

    assert (refused.value.code, refused.value.param) == ("url_invalid", "success_url")
    assert refused.value.user_message == "Not a valid URL"


async def test_an_unknown_price_is_refused_naming_its_line_item(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await open_session(
            client, catalog, line_items=[{"price": catalog.metered_price}, {"price": "price_nope"}]
        )

    assert (refused.value.http_status, refused.value.code) == (400, "resource_missing")
    assert refused.value.param == "line_items[1][price]"


async def test_an_inactive_price_is_refused(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    price = await client.v1.prices.retrieve_async(catalog.licensed_price)
    retired = await client.v1.prices.create_async(
        {
            "currency": "eur",
            "product": str(price.product),
            "unit_amount": 700,
            "recurring": {"interval": "month"},
            "active": False,
        }
    )

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await open_session(client, catalog, line_items=[{"price": retired.id, "quantity": 1}])

    assert refused.value.param == "line_items[0][price]"
    assert "only accepts active prices" in str(refused.value.user_message)


async def test_a_quantity_on_a_metered_price_is_refused(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await open_session(
            client, catalog, line_items=[{"price": catalog.metered_price, "quantity": 1}]
        )

    assert refused.value.user_message == (
        "Quantity should not be specified where usage_type is `metered`. "
        "Remove quantity from `line_items[0]`"
    )


async def test_a_licensed_price_without_a_quantity_is_refused(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await open_session(client, catalog, line_items=[{"price": catalog.licensed_price}])

    assert refused.value.user_message == "Quantity is required. Add `quantity` to `line_items[0]`"


async def test_an_unknown_customer_is_refused(
    client: stripe.StripeClient, catalog: BillingCatalog, state: StandinState
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await open_session(client, catalog, customer="cus_nobody")

    assert (refused.value.code, refused.value.param) == ("resource_missing", "customer")
    assert state.checkout_sessions == {}


async def test_a_mode_the_stand_in_does_not_model_is_refused_rather_than_ignored(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await open_session(client, catalog, mode="payment")

    assert refused.value.param == "mode"


async def test_an_unknown_parameter_is_refused(
    raw: httpx.AsyncClient, catalog: BillingCatalog
) -> None:
    answer = await raw.post(
        "/v1/checkout/sessions",
        data={
            "mode": "subscription",
            "success_url": SUCCESS_URL,
            "line_items[0][price]": catalog.metered_price,
            "line_items[0][adjustable_quantity][enabled]": "true",
        },
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "line_items[0][adjustable_quantity]"


async def test_expiring_an_open_session_closes_it_and_clears_its_url(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    session = await open_session(client, catalog)

    expired = await client.v1.checkout.sessions.expire_async(session.id)

    assert (expired.status, expired.url) == ("expired", None)


async def test_expiring_a_session_twice_is_refused_with_its_status(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    session = await open_session(client, catalog)
    await client.v1.checkout.sessions.expire_async(session.id)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.checkout.sessions.expire_async(session.id)

    assert refused.value.user_message == (
        'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
        "Session has a status of `expired`."
    )


async def test_a_session_left_open_for_24_hours_reads_as_expired(
    client: stripe.StripeClient, catalog: BillingCatalog, state: StandinState
) -> None:
    session = await open_session(client, catalog)
    state.clock.advance(DAY)

    fetched = await client.v1.checkout.sessions.retrieve_async(session.id)

    assert (fetched.status, fetched.url) == ("expired", None)
    [event] = [e for e in state.webhook_events.values() if e.type == "checkout.session.expired"]
    assert event.created == session.expires_at


async def test_an_injected_server_error_on_create_leaves_no_session(
    client: stripe.StripeClient, catalog: BillingCatalog, state: StandinState
) -> None:
    state.set_faults(FaultPlan(server_error=1.0, targets=(FaultTarget.CHECKOUT,)))

    with pytest.raises(stripe.APIError) as failed:
        await open_session(client, catalog)

    assert failed.value.http_status == 500
    assert state.checkout_sessions == {}


async def test_an_injected_refusal_on_create_is_a_400_and_leaves_no_session(
    client: stripe.StripeClient, catalog: BillingCatalog, state: StandinState
) -> None:
    state.set_faults(FaultPlan(invalid_request=1.0, targets=(FaultTarget.CHECKOUT,)))

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await open_session(client, catalog)

    assert refused.value.http_status == 400
    assert state.checkout_sessions == {}


async def test_faults_aimed_at_metering_leave_checkout_alone(
    client: stripe.StripeClient, catalog: BillingCatalog, state: StandinState
) -> None:
    state.set_faults(FaultPlan(server_error=1.0))

    session = await open_session(client, catalog)

    assert session.status == "open"


async def test_sessions_are_listed_by_customer_and_status_newest_first(
    client: stripe.StripeClient, catalog: BillingCatalog
) -> None:
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})
    other = await client.v1.customers.create_async({"name": "Frost Ltd"})
    older = await open_session(client, catalog, customer=customer.id)
    expired = await open_session(client, catalog, customer=customer.id)
    newer = await open_session(client, catalog, customer=customer.id)
    await open_session(client, catalog, customer=other.id)
    await client.v1.checkout.sessions.expire_async(expired.id)

    open_ones = await client.v1.checkout.sessions.list_async(
        {"customer": customer.id, "status": "open"}
    )
    expired_ones = await client.v1.checkout.sessions.list_async(
        {"customer": customer.id, "status": "expired"}
    )
    every_one = await client.v1.checkout.sessions.list_async({"customer": customer.id})

    assert [s.id for s in open_ones.data] == [newer.id, older.id]
    assert [s.id for s in expired_ones.data] == [expired.id]
    assert [s.id for s in every_one.data] == [newer.id, expired.id, older.id]


async def test_a_session_past_its_24_hours_is_listed_as_expired_not_open(
    client: stripe.StripeClient, catalog: BillingCatalog, state: StandinState
) -> None:
    customer = await client.v1.customers.create_async({"name": "Cold Chain"})
    session = await open_session(client, catalog, customer=customer.id)
    state.clock.advance(DAY)

    open_ones = await client.v1.checkout.sessions.list_async(
        {"customer": customer.id, "status": "open"}
    )
    expired_ones = await client.v1.checkout.sessions.list_async(
        {"customer": customer.id, "status": "expired"}
    )

    assert open_ones.data == []
    assert [s.id for s in expired_ones.data] == [session.id]


async def test_a_session_list_with_an_unknown_status_or_an_unmodelled_filter_is_refused(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as bad_status:
        await client.v1.checkout.sessions.list_async({"status": "paid"})
    with pytest.raises(stripe.InvalidRequestError) as unmodelled:
        await client.v1.checkout.sessions.list_async({"payment_link": "plink_1"})

    assert bad_status.value.param == "status"
    assert "open, complete, expired" in str(bad_status.value.user_message)
    assert unmodelled.value.param == "payment_link"
    assert "stand-in" in str(unmodelled.value.user_message)


async def test_an_injected_server_error_on_a_session_list_answers_500(
    client: stripe.StripeClient, catalog: BillingCatalog, state: StandinState
) -> None:
    await open_session(client, catalog)
    state.set_faults(FaultPlan(server_error=1.0, targets=(FaultTarget.CHECKOUT,)))

    with pytest.raises(stripe.APIError) as failed:
        await client.v1.checkout.sessions.list_async({"status": "open"})

    assert failed.value.http_status == 500
