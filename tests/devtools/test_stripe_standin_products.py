"""Products and prices on the stand-in, through the SDK: created, found, refused like Stripe."""

from __future__ import annotations

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import StandinState
from tests.devtools.helpers import MeterFactory


async def make_product(client: stripe.StripeClient) -> stripe.Product:
    return await client.v1.products.create_async(
        {"name": "Temperature monitoring", "metadata": {"plan": "standard"}}
    )


async def make_metered_price(
    client: stripe.StripeClient, product: str, meter: str, lookup_key: str = "readings_eur"
) -> stripe.Price:
    params: dict[str, object] = {
        "currency": "eur",
        "product": product,
        "unit_amount_decimal": "0.01",
        "recurring": {"interval": "month", "usage_type": "metered", "meter": meter},
        "lookup_key": lookup_key,
    }
    return await client.v1.prices.create_async(params)  # type: ignore[arg-type]


async def test_a_product_is_created_listed_and_retrieved(client: stripe.StripeClient) -> None:
    product = await make_product(client)

    listed = await client.v1.products.list_async({"active": True})
    retrieved = await client.v1.products.retrieve_async(product.id)

    assert product.id.startswith("prod_")
    assert [p.id for p in listed.data] == [product.id]
    assert retrieved.name == "Temperature monitoring"
    assert retrieved.to_dict()["metadata"] == {"plan": "standard"}


async def test_an_unknown_product_is_a_404(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v1.products.retrieve_async("prod_missing")

    assert missing.value.http_status == 404


async def test_a_metered_price_names_its_meter(
    client: stripe.StripeClient, create_meter: MeterFactory
) -> None:
    meter = await create_meter()
    product = await make_product(client)

    price = await make_metered_price(client, product.id, meter.id)

    assert price.recurring is not None
    assert (price.recurring.usage_type, price.recurring.meter) == ("metered", meter.id)
    assert price.unit_amount is None
    assert str(price.unit_amount_decimal) == "0.01"
    assert (await client.v1.prices.retrieve_async(price.id)).id == price.id


async def test_a_metered_price_with_an_unknown_meter_is_refused(
    client: stripe.StripeClient, state: StandinState
) -> None:
    product = await make_product(client)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await make_metered_price(client, product.id, "mtr_test_missing")

    assert refused.value.param == "recurring[meter]"
    assert not state.prices


async def test_a_metered_price_without_a_meter_is_refused(
    client: stripe.StripeClient, raw: httpx.AsyncClient
) -> None:
    product = await make_product(client)

    answer = await raw.post(
        "/v1/prices",
        data={
            "currency": "eur",
            "product": product.id,
            "unit_amount": "500",
            "recurring[interval]": "month",
            "recurring[usage_type]": "metered",
        },
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "recurring[meter]"


async def test_prices_are_found_by_lookup_key(
    client: stripe.StripeClient, create_meter: MeterFactory, raw: httpx.AsyncClient
) -> None:
    meter = await create_meter()
    product = await make_product(client)
    wanted = await make_metered_price(client, product.id, meter.id, "wanted")
    await make_metered_price(client, product.id, meter.id, "other")

    by_sdk = await client.v1.prices.list_async({"lookup_keys": ["wanted", "absent"]})
    by_brackets = await raw.get("/v1/prices", params={"lookup_keys[]": "wanted"})
    everything = await client.v1.prices.list_async()

    assert [p.id for p in by_sdk.data] == [wanted.id]
    assert [p["id"] for p in by_brackets.json()["data"]] == [wanted.id]
    assert len(everything.data) == 2


async def test_a_lookup_key_belongs_to_one_price_unless_transferred(
    client: stripe.StripeClient, create_meter: MeterFactory
) -> None:
    meter = await create_meter()
    product = await make_product(client)
    first = await make_metered_price(client, product.id, meter.id, "readings")

    with pytest.raises(stripe.InvalidRequestError, match="already uses that lookup key"):
        await make_metered_price(client, product.id, meter.id, "readings")
    params: dict[str, object] = {
        "currency": "eur",
        "product": product.id,
        "unit_amount": 2,
        "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        "lookup_key": "readings",
        "transfer_lookup_key": True,
    }
    second = await client.v1.prices.create_async(params)  # type: ignore[arg-type]

    old = await client.v1.prices.retrieve_async(first.id)
    assert old.lookup_key is None
    assert second.lookup_key == "readings"


async def test_a_price_for_an_unknown_product_is_refused(
    client: stripe.StripeClient, create_meter: MeterFactory
) -> None:
    meter = await create_meter()

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await make_metered_price(client, "prod_missing", meter.id)

    assert refused.value.param == "product"
