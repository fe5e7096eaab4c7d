"""`set_up_stripe` against the stand-in: creates what is missing, never twice, refuses drift."""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe

from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.errors import StripeSetupConflictError
from sensor_billing.stripe_api.setup import SetupOptions, price_lookup_key, set_up_stripe


async def test_setup_creates_meters_product_and_metered_prices(
    client: stripe.StripeClient, standin: RunningStandin
) -> None:
    result = await set_up_stripe(client, SetupOptions())

    assert [(i.kind, i.name, i.outcome) for i in result.items] == [
        ("meter", "active_sensors", "created"),
        ("meter", "temperature_readings", "created"),
        ("product", "Temperature monitoring", "created"),
        ("price", "active_sensors", "created"),
        ("price", "temperature_readings", "created"),
    ]
    state = standin.state
    meters = {m.event_name: m for m in state.meters.values()}
    assert meters["active_sensors"].formula == "last"
    assert meters["temperature_readings"].formula == "sum"
    assert {m.customer_key for m in meters.values()} == {"stripe_customer_id"}
    assert {m.value_key for m in meters.values()} == {"value"}
    (product,) = state.products.values()
    assert product.name == "Temperature monitoring"
    prices = {p.lookup_key: p for p in state.prices.values()}
    sensors = prices[price_lookup_key("active_sensors", "eur")]
    readings = prices[price_lookup_key("temperature_readings", "eur")]
    assert (sensors.meter, sensors.usage_type, sensors.interval, sensors.currency) == (
        meters["active_sensors"].id,
        "metered",
        "month",
        "eur",
    )
    assert readings.meter == meters["temperature_readings"].id
    assert readings.unit_amount_decimal == Decimal("0.01")
    assert {sensors.product, readings.product} == {product.id}
    assert f"price active_sensors={sensors.id}" in result.reference_lines()
    assert result.settings_lines() == [
        f"STRIPE_METER_ACTIVE_SENSORS={meters['active_sensors'].id}",
        f"STRIPE_METER_TEMPERATURE_READINGS={meters['temperature_readings'].id}",
    ]


async def test_second_setup_creates_nothing_and_says_so(
    client: stripe.StripeClient, standin: RunningStandin
) -> None:
    first = await set_up_stripe(client, SetupOptions())
    counts = (len(standin.state.meters), len(standin.state.products), len(standin.state.prices))

    second = await set_up_stripe(client, SetupOptions())

    assert second.created == []
    assert {i.outcome for i in second.items} == {"exists"}
    assert [i.id for i in second.items] == [i.id for i in first.items]
    assert counts == (
        len(standin.state.meters),
        len(standin.state.products),
        len(standin.state.prices),
    )


async def test_meter_with_the_wrong_aggregation_is_refused_with_what_to_do(
    client: stripe.StripeClient, standin: RunningStandin
) -> None:
    wrong = await client.v1.billing.meters.create_async(
        {
            "display_name": "Active sensors",
            "event_name": "active_sensors",
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
            "value_settings": {"event_payload_key": "value"},
        }
    )

    with pytest.raises(StripeSetupConflictError) as refused:
        await set_up_stripe(client, SetupOptions())

    message = str(refused.value)
    assert wrong.id in message
    assert "aggregation sum, not last" in message
    assert "deactivate" in message
    assert len(standin.state.meters) == 1
    assert not standin.state.products
    assert not standin.state.prices


async def test_price_with_another_amount_is_refused(
    client: stripe.StripeClient, standin: RunningStandin
) -> None:
    await set_up_stripe(client, SetupOptions())
    cheaper = SetupOptions(
        unit_amounts={"active_sensors": Decimal(400), "temperature_readings": Decimal("0.01")}
    )

    with pytest.raises(StripeSetupConflictError, match="transfer_lookup_key"):
        await set_up_stripe(client, cheaper)


async def test_another_currency_gets_its_own_prices(
    client: stripe.StripeClient, standin: RunningStandin
) -> None:
    await set_up_stripe(client, SetupOptions())

    result = await set_up_stripe(client, SetupOptions(currency="usd"))

    assert [(i.kind, i.outcome) for i in result.created] == [("price", "created")] * 2
    assert len(standin.state.prices) == 4
