"""Stripe answers 2xx then validates: failures become error reports instead of usage."""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe

from sensor_billing.devtools.stripe_standin import ErrorCode, StandinConfig, StandinState
from tests.devtools.helpers import EVENT_NAME, CustomerFactory, MeterFactory, send_event

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


async def test_event_without_an_active_meter_is_reported_as_no_meter(
    client: stripe.StripeClient, state: StandinState
) -> None:
    await send_event(client, event_name="nobody_meters_this", identifier="orphan")

    [report] = state.error_reports()
    assert (report.code, report.event_identifier) == (ErrorCode.NO_METER, "orphan")
    assert report.thin_event_type == "v1.billing.meter.no_meter_found"


async def test_event_for_a_deactivated_meter_is_reported_as_archived_meter(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    meter = await create_meter()
    await client.v1.billing.meters.deactivate_async(meter.id)

    await send_event(client)

    assert [r.code for r in state.error_reports()] == [ErrorCode.ARCHIVED_METER]


async def test_unknown_customer_is_reported_once_any_customer_exists(
    client: stripe.StripeClient,
    state: StandinState,
    create_meter: MeterFactory,
    create_customer: CustomerFactory,
) -> None:
    await create_meter()
    await create_customer()

    await send_event(client, customer="cus_stranger")

    [report] = state.error_reports()
    assert report.code == ErrorCode.CUSTOMER_NOT_FOUND
    assert report.thin_event_type == "v1.billing.meter.error_report_triggered"
    assert state.accepted_totals() == {}


async def test_event_for_a_created_customer_counts(
    client: stripe.StripeClient,
    state: StandinState,
    create_meter: MeterFactory,
    create_customer: CustomerFactory,
) -> None:
    await create_meter()
    customer = await create_customer()

    await send_event(client, customer=customer, value="4")

    assert state.accepted_totals() == {(customer, EVENT_NAME): Decimal(4)}


async def test_any_customer_counts_while_no_customer_was_ever_created(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    await create_meter()

    await send_event(client, customer="cus_free", value="4")

    assert state.error_reports() == []
    assert state.accepted_totals() == {("cus_free", EVENT_NAME): Decimal(4)}


async def test_strict_customers_can_be_switched_on_before_any_customer_exists(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    await create_meter()
    state.configure(StandinConfig(strict_customers=True))

    await send_event(client, customer="cus_free")

    assert [r.code for r in state.error_reports()] == [ErrorCode.CUSTOMER_NOT_FOUND]


async def test_event_for_a_deleted_customer_is_reported(
    client: stripe.StripeClient,
    state: StandinState,
    create_meter: MeterFactory,
    create_customer: CustomerFactory,
) -> None:
    await create_meter()
    customer = await create_customer()
    await client.v1.customers.delete_async(customer)

    await send_event(client, customer=customer)

    assert [r.code for r in state.error_reports()] == [ErrorCode.CUSTOMER_NOT_FOUND]


async def test_non_numeric_value_is_accepted_then_reported_as_invalid_value(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    await create_meter()

    event = await send_event(client, value="twelve")

    assert event.to_dict()["payload"]["value"] == "twelve"
    assert [r.code for r in state.error_reports()] == [ErrorCode.INVALID_VALUE]
    assert state.accepted_totals() == {}


async def test_decimal_and_negative_values_count(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    await create_meter()

    await send_event(client, customer="cus_1", value="2.5")
    await send_event(client, customer="cus_1", value="-1")

    assert state.error_reports() == []
    assert state.accepted_totals() == {("cus_1", EVENT_NAME): Decimal("1.5")}


async def test_last_values_take_the_event_with_the_latest_timestamp(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    await create_meter(event_name="active_sensors", formula="last")
    now = int(state.clock.now())

    await send_event(
        client, event_name="active_sensors", customer="cus_1", value="9", timestamp=now
    )
    await send_event(
        client, event_name="active_sensors", customer="cus_1", value="4", timestamp=now - 60
    )

    assert state.last_values() == {("cus_1", "active_sensors"): Decimal(9)}
