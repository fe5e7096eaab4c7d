"""`POST /v1/invoices/create_preview` through the official SDK: the current period's accepted
usage times the prices, and Stripe's refusals."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import FaultPlan, FaultTarget, StandinState
from tests.devtools.helpers import (
    BillingCatalog,
    StreamClientFactory,
    create_billing_catalog,
    send_event,
    stream_event,
    subscribe,
)

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)

READINGS = "temperature_readings"


def period_of(subscription: dict[str, Any]) -> tuple[int, int]:
    item = subscription["items"]["data"][0]
    return item["current_period_start"], item["current_period_end"]


async def test_the_preview_bills_the_periods_accepted_usage_rounded_half_up(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    customer, (start, end) = subscription["customer"], period_of(subscription)
    for value in ("1", "2"):
        await send_event(
            client, customer=customer, value=value, event_name=READINGS, timestamp=start
        )

    preview = await client.v1.invoices.create_preview_async({"subscription": subscription["id"]})

    # 3 readings at 0.5 cents: 1.5, rounded half up to 2 (docs: decimal-amounts).
    assert (preview.amount_due, preview.subtotal, preview.total, preview.currency) == (
        2,
        2,
        2,
        "eur",
    )
    assert (preview.period_start, preview.period_end) == (start, end)
    [line] = preview.lines.data
    assert (line.amount, line.quantity) == (2, 3)
    assert (line.period.start, line.period.end) == (start, end)
    assert line.pricing is not None
    assert line.pricing.price_details is not None
    assert line.pricing.price_details.price == catalog.metered_price
    assert preview.parent is not None
    assert preview.parent.subscription_details is not None
    assert preview.parent.subscription_details.subscription == subscription["id"]


async def test_the_preview_counts_only_what_stripe_accepted_for_the_customer_in_the_period(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    stream_client: StreamClientFactory,
    state: StandinState,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    other = (await subscribe(client, catalog, control))["subscription"]
    customer, (start, _) = subscription["customer"], period_of(subscription)
    await send_event(client, customer=customer, value="10", event_name=READINGS, timestamp=start)
    stream = await stream_client()
    await stream.v2.billing.meter_event_stream.create_async(
        {"events": [stream_event(customer=customer, value="6", event_name=READINGS)]}
    )
    await send_event(
        client,
        customer=customer,
        value="100",
        event_name=READINGS,
        timestamp=start,
        identifier="cancelled",
    )
    await client.v1.billing.meter_event_adjustments.create_async(
        {"type": "cancel", "event_name": READINGS, "cancel": {"identifier": "cancelled"}}
    )
    await send_event(client, customer=customer, value="lots", event_name=READINGS, timestamp=start)
    await send_event(
        client, customer=customer, value="1000", event_name=READINGS, timestamp=start - 3600
    )
    await send_event(
        client, customer=other["customer"], value="1000", event_name=READINGS, timestamp=start
    )

    preview = await client.v1.invoices.create_preview_async(
        {"customer": customer, "subscription": subscription["id"]}
    )

    assert [e.error_code for e in state.accepted_events() if e.value == "lots"] == [
        "meter_event_invalid_value"
    ]
    assert preview.lines.data[0].quantity == 16
    assert preview.amount_due == 8


async def test_a_last_meter_bills_the_latest_value_and_seats_bill_the_next_period(
    client: stripe.StripeClient, control: httpx.AsyncClient
) -> None:
    sensors = await create_billing_catalog(
        client, reading_price="500", formula="last", event_name="active_sensors"
    )
    subscription = (
        await subscribe(
            client,
            sensors,
            control,
            line_items=[
                {"price": sensors.metered_price},
                {"price": sensors.licensed_price, "quantity": 2},
            ],
        )
    )["subscription"]
    customer, (start, end) = subscription["customer"], period_of(subscription)
    await send_event(
        client, customer=customer, value="4", event_name="active_sensors", timestamp=start + 1
    )
    await send_event(
        client, customer=customer, value="3", event_name="active_sensors", timestamp=start
    )

    preview = await client.v1.invoices.create_preview_async({"subscription": subscription["id"]})

    usage, seats = preview.lines.data
    assert (usage.quantity, usage.amount) == (4, 2000)
    assert (seats.quantity, seats.amount, seats.period.start) == (2, 1000, end)
    assert preview.amount_due == 3000


async def test_a_preview_without_a_subscription_is_refused_as_stripe_refuses_it(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    customer = (await subscribe(client, catalog, control))["subscription"]["customer"]

    with pytest.raises(stripe.InvalidRequestError) as customer_only:
        await client.v1.invoices.create_preview_async({"customer": customer})
    with pytest.raises(stripe.InvalidRequestError) as nothing:
        await client.v1.invoices.create_preview_async({})

    for refused in (customer_only, nothing):
        assert refused.value.http_status == 400
        assert str(refused.value.user_message).startswith(
            "You must provide at least one of: `subscription`"
        )


async def test_a_canceled_subscription_has_no_upcoming_invoice(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    await client.v1.subscriptions.cancel_async(subscription["id"])

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.invoices.create_preview_async({"subscription": subscription["id"]})

    assert (refused.value.http_status, refused.value.code) == (404, "invoice_upcoming_none")


async def test_an_unknown_subscription_or_customer_is_refused_naming_it(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]

    with pytest.raises(stripe.InvalidRequestError) as no_subscription:
        await client.v1.invoices.create_preview_async({"subscription": "sub_nothing"})
    with pytest.raises(stripe.InvalidRequestError) as no_customer:
        await client.v1.invoices.create_preview_async(
            {"customer": "cus_nobody", "subscription": subscription["id"]}
        )

    assert (no_subscription.value.code, no_subscription.value.param) == (
        "resource_missing",
        "subscription",
    )
    assert (no_customer.value.code, no_customer.value.param) == ("resource_missing", "customer")


async def test_another_customers_subscription_is_refused(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    mine = (await subscribe(client, catalog, control))["subscription"]
    theirs = (await subscribe(client, catalog, control))["subscription"]

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.invoices.create_preview_async(
            {"customer": mine["customer"], "subscription": theirs["id"]}
        )

    assert refused.value.param == "subscription"


async def test_after_a_renewal_the_preview_is_of_the_new_period(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    customer, (start, end) = subscription["customer"], period_of(subscription)
    await send_event(client, customer=customer, value="9", event_name=READINGS, timestamp=start)
    renewed = await control.post(f"/subscriptions/{subscription['id']}/payment_succeeded", json={})

    preview = await client.v1.invoices.create_preview_async({"subscription": subscription["id"]})

    assert renewed.json()["invoice"]["amount_due"] == 5  # 9 x 0.5 = 4.5, rounded half up
    assert preview.period_start == end
    assert preview.amount_due == 0


async def test_an_injected_failure_on_the_preview_is_a_500(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    state: StandinState,
) -> None:
    subscription = (await subscribe(client, catalog, control))["subscription"]
    state.set_faults(FaultPlan(server_error=1.0, targets=(FaultTarget.INVOICES,)))

    with pytest.raises(stripe.APIError) as failed:
        await client.v1.invoices.create_preview_async({"subscription": subscription["id"]})

    assert failed.value.http_status == 500


async def test_a_subscription_ending_at_its_period_end_previews_its_usage_and_no_next_seat(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (
        await subscribe(
            client,
            catalog,
            control,
            line_items=[
                {"price": catalog.metered_price},
                {"price": catalog.licensed_price, "quantity": 2},
            ],
        )
    )["subscription"]
    customer, (start, _) = subscription["customer"], period_of(subscription)
    await send_event(client, customer=customer, value="4", event_name=READINGS, timestamp=start)
    await client.v1.subscriptions.update_async(subscription["id"], {"cancel_at_period_end": True})

    preview = await client.v1.invoices.create_preview_async({"subscription": subscription["id"]})

    [usage] = preview.lines.data
    assert usage.pricing is not None
    assert usage.pricing.price_details is not None
    assert (usage.pricing.price_details.price, usage.amount) == (catalog.metered_price, 2)
    assert preview.amount_due == 2


async def test_a_seats_only_subscription_ending_at_its_period_end_has_no_upcoming_invoice(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    subscription = (
        await subscribe(
            client, catalog, control, line_items=[{"price": catalog.licensed_price, "quantity": 1}]
        )
    )["subscription"]
    await client.v1.subscriptions.update_async(subscription["id"], {"cancel_at_period_end": True})

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.invoices.create_preview_async({"subscription": subscription["id"]})

    assert (refused.value.http_status, refused.value.code) == (404, "invoice_upcoming_none")
