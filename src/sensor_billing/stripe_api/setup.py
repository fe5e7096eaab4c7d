"""Stripe set-up as code: the two Billing Meters, the product and its metered prices.

Run it as often as you like: every object is looked up first (meters by `event_name`, the
product by its metadata, prices by `lookup_key`) and only what is missing is created.

What cannot be fixed in place is refused, with what to do instead: a meter cannot be changed
after creation except its display name (docs: api/billing/meter/update), and a price cannot
change its amount, currency or meter (docs: api/prices/update).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import stripe

from sensor_billing.errors import CheckoutNotConfiguredError, StripeSetupConflictError
from sensor_billing.stripe_api.meter_events import map_stripe_error

# The keys the reporter sends (stripe_api.meter_events.send_meter_event).
CUSTOMER_PAYLOAD_KEY = "stripe_customer_id"
VALUE_PAYLOAD_KEY = "value"

# Products cannot be listed by metadata (only searched, which lags by up to a minute: docs:
# search#data-freshness), so the set-up lists products and matches this metadata pair.
PRODUCT_METADATA_KEY = "sensor_billing_product"
PRODUCT_METADATA_VALUE = "temperature_monitoring"
PRODUCT_NAME = "Temperature monitoring"

DEFAULT_CURRENCY = "eur"
# Cents per active sensor per month (the `last` value of the period), and cents per reading.
DEFAULT_SENSOR_UNIT_AMOUNT = Decimal(500)
DEFAULT_READING_UNIT_AMOUNT = Decimal("0.01")

Outcome = Literal["created", "exists"]


@dataclass(frozen=True, slots=True)
class MeterSpec:
    event_name: str
    display_name: str
    formula: Literal["sum", "count", "last"]


METER_SPECS = (
    MeterSpec("active_sensors", "Active sensors", "last"),
    MeterSpec("temperature_readings", "Temperature readings", "sum"),
)


@dataclass(frozen=True, slots=True)
class SetupOptions:
    currency: str = DEFAULT_CURRENCY
    # Minor units (cents), as Stripe's `unit_amount_decimal` (at most 12 decimal places).
    unit_amounts: dict[str, Decimal] = field(
        default_factory=lambda: {
            "active_sensors": DEFAULT_SENSOR_UNIT_AMOUNT,
            "temperature_readings": DEFAULT_READING_UNIT_AMOUNT,
        }
    )


@dataclass(frozen=True, slots=True)
class SetupItem:
    kind: Literal["meter", "product", "price"]
    name: str
    id: str
    outcome: Outcome

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "id": self.id, "outcome": self.outcome}


@dataclass(frozen=True, slots=True)
class SetupResult:
    items: list[SetupItem]

    @property
    def created(self) -> list[SetupItem]:
        return [item for item in self.items if item.outcome == "created"]

    def id_of(self, kind: str, name: str) -> str:
        return next(i.id for i in self.items if i.kind == kind and i.name == name)

    def settings_lines(self) -> list[str]:
        """`NAME=id` lines for the settings that take these ids (STRIPE_METER_*)."""
        return [
            f"STRIPE_METER_{spec.event_name.upper()}={self.id_of('meter', spec.event_name)}"
            for spec in METER_SPECS
        ]

    def reference_lines(self) -> list[str]:
        """The product's and prices' ids: for subscriptions made elsewhere (checkout, the
        dashboard); no setting of this service takes them."""
        lines = [f"product={self.id_of('product', PRODUCT_NAME)}"]
        lines += [
            f"price {spec.event_name}={self.id_of('price', spec.event_name)}"
            for spec in METER_SPECS
        ]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "created": len(self.created),
            "items": [item.to_json() for item in self.items],
            "settings": dict(line.split("=", 1) for line in self.settings_lines()),
            "reference": dict(line.split("=", 1) for line in self.reference_lines()),
        }


def price_lookup_key(event_name: str, currency: str) -> str:
    # The currency is part of the key: a price's currency cannot change, so another currency
    # is another price.
    return f"sensor_billing_{event_name}_monthly_{currency}"


def event_name_of_price(lookup_key: str | None, currency: str) -> str | None:
    """The meter event a price made by the set-up bills, from its lookup key; None for a
    price made otherwise."""
    for spec in METER_SPECS:
        if lookup_key == price_lookup_key(spec.event_name, currency):
            return spec.event_name
    return None


async def set_up_stripe(client: stripe.StripeClient, options: SetupOptions) -> SetupResult:
    """Make sure meters, product and prices exist; create only what is missing.

    Raises `StripeSetupConflictError` when an existing object differs in a way Stripe cannot
    change, and `StripeUnavailableError`/`StripeRefusedError` for Stripe's own errors."""
    currency = options.currency.lower()
    try:
        items: list[SetupItem] = []
        meters: dict[str, str] = {}
        for spec in METER_SPECS:
            item = await _ensure_meter(client, spec)
            meters[spec.event_name] = item.id
            items.append(item)
        product = await _ensure_product(client)
        items.append(product)
        for spec in METER_SPECS:
            amount = options.unit_amounts[spec.event_name]
            items.append(
                await _ensure_price(
                    client, spec, meters[spec.event_name], product.id, currency, amount
                )
            )
    except stripe.StripeError as error:
        raise map_stripe_error(error) from error
    return SetupResult(items)


async def _ensure_meter(client: stripe.StripeClient, spec: MeterSpec) -> SetupItem:
    page = await client.v1.billing.meters.list_async({"status": "active", "limit": 100})
    async for meter in page.auto_paging_iter():
        if meter.event_name != spec.event_name:
            continue
        problems = _meter_differences(meter, spec)
        if problems:
            raise StripeSetupConflictError(
                f"meter {meter.id} (event_name {spec.event_name}) has {'; '.join(problems)}. "
                "Stripe cannot change a meter after creation (only its display name). "
                f"Either deactivate it (POST /v1/billing/meters/{meter.id}/deactivate, or the "
                "Dashboard) and run the set-up again to create a correct one, or, if its "
                "usage must stay billable, keep it and create the correct meter by hand "
                "under another event name (the service reports to the event name "
                f"{spec.event_name}, so that needs a code change)"
            )
        return SetupItem("meter", spec.event_name, meter.id, "exists")
    created = await client.v1.billing.meters.create_async(
        {
            "display_name": spec.display_name,
            "event_name": spec.event_name,
            "default_aggregation": {"formula": spec.formula},
            "customer_mapping": {"event_payload_key": CUSTOMER_PAYLOAD_KEY, "type": "by_id"},
            "value_settings": {"event_payload_key": VALUE_PAYLOAD_KEY},
        }
    )
    return SetupItem("meter", spec.event_name, created.id, "created")


def _meter_differences(meter: stripe.billing.Meter, spec: MeterSpec) -> list[str]:
    problems = []
    formula = meter.default_aggregation.formula
    if formula != spec.formula:
        problems.append(f"aggregation {formula}, not {spec.formula}")
    mapping = meter.customer_mapping
    if mapping.type != "by_id" or mapping.event_payload_key != CUSTOMER_PAYLOAD_KEY:
        problems.append(
            f"customer mapping {mapping.type} on {mapping.event_payload_key!r}, "
            f"not by_id on {CUSTOMER_PAYLOAD_KEY!r}"
        )
    value_key = meter.value_settings.event_payload_key
    if value_key != VALUE_PAYLOAD_KEY:
        problems.append(f"value key {value_key!r}, not {VALUE_PAYLOAD_KEY!r}")
    return problems


async def _find_product(client: stripe.StripeClient) -> str | None:
    page = await client.v1.products.list_async({"active": True, "limit": 100})
    async for product in page.auto_paging_iter():
        metadata: dict[str, Any] = product.to_dict().get("metadata") or {}
        if metadata.get(PRODUCT_METADATA_KEY) == PRODUCT_METADATA_VALUE:
            return product.id
    return None


async def _ensure_product(client: stripe.StripeClient) -> SetupItem:
    found = await _find_product(client)
    if found is not None:
        return SetupItem("product", PRODUCT_NAME, found, "exists")
    created = await client.v1.products.create_async(
        {"name": PRODUCT_NAME, "metadata": {PRODUCT_METADATA_KEY: PRODUCT_METADATA_VALUE}},
        # Two set-ups started at once create one product (docs: api/idempotent_requests).
        {"idempotency_key": f"sensor-billing-setup-product-{PRODUCT_METADATA_VALUE}"},
    )
    return SetupItem("product", PRODUCT_NAME, created.id, "created")


async def _ensure_price(
    client: stripe.StripeClient,
    spec: MeterSpec,
    meter_id: str,
    product_id: str,
    currency: str,
    amount: Decimal,
) -> SetupItem:
    lookup_key = price_lookup_key(spec.event_name, currency)
    page = await client.v1.prices.list_async({"lookup_keys": [lookup_key], "limit": 10})
    for price in page.data:
        problems = _price_differences(price, meter_id, product_id, amount)
        if problems:
            raise StripeSetupConflictError(
                f"price {price.id} (lookup_key {lookup_key}) has {'; '.join(problems)}. "
                "Stripe cannot change a price's amount, meter or product. Create the new "
                "price with this lookup_key and transfer_lookup_key=true (or archive the old "
                "one and remove its lookup_key), then run the set-up again; existing "
                "subscriptions keep the old price until they are moved"
            )
        return SetupItem("price", spec.event_name, price.id, "exists")
    params: Any = {
        "currency": currency,
        "product": product_id,
        "unit_amount_decimal": amount,
        "recurring": {"interval": "month", "usage_type": "metered", "meter": meter_id},
        "lookup_key": lookup_key,
        "nickname": f"{spec.display_name} ({currency}, monthly)",
    }
    created = await client.v1.prices.create_async(params)
    return SetupItem("price", spec.event_name, created.id, "created")


def _price_differences(
    price: stripe.Price, meter_id: str, product_id: str, amount: Decimal
) -> list[str]:
    problems = []
    recurring = price.recurring
    found_meter = recurring.meter if recurring is not None else None
    if found_meter != meter_id:
        problems.append(f"meter {found_meter}, not {meter_id}")
    found_product = price.product if isinstance(price.product, str) else price.product.id
    if found_product != product_id:
        problems.append(f"product {found_product}, not {product_id}")
    found_amount = price.unit_amount_decimal
    if found_amount is None or Decimal(found_amount) != amount:
        problems.append(f"unit amount {found_amount} cents, not {amount}")
    if recurring is None or recurring.interval != "month" or recurring.usage_type != "metered":
        problems.append("not a monthly metered price")
    return problems


async def find_subscription_prices(client: stripe.StripeClient) -> list[str]:
    """The metered prices a subscription to the product takes, one per meter, as the set-up
    made them: the product by its metadata, its active prices by lookup key, in the one
    currency that has both (a Checkout Session bills one currency).

    Raises `CheckoutNotConfiguredError` when the set-up has not run (or ran for several
    currencies), and `StripeUnavailableError`/`StripeRefusedError` for Stripe's own errors."""
    try:
        product = await _find_product(client)
        by_currency: dict[str, dict[str, str]] = {}
        if product is not None:
            page = await client.v1.prices.list_async(
                {"product": product, "active": True, "type": "recurring", "limit": 100}
            )
            async for price in page.auto_paging_iter():
                for spec in METER_SPECS:
                    if price.lookup_key == price_lookup_key(spec.event_name, price.currency):
                        by_currency.setdefault(price.currency, {})[spec.event_name] = price.id
    except stripe.StripeError as error:
        raise map_stripe_error(error) from error
    complete = {
        currency: prices
        for currency, prices in by_currency.items()
        if len(prices) == len(METER_SPECS)
    }
    if not complete:
        raise CheckoutNotConfiguredError(
            "the Stripe account has no active metered prices for the product "
            f"{PRODUCT_NAME!r}: run `sensor-billing stripe setup`"
        )
    if len(complete) > 1:
        raise CheckoutNotConfiguredError(
            f"the product {PRODUCT_NAME!r} has metered prices in several currencies "
            f"({', '.join(sorted(complete))}): archive those of the currencies not sold"
        )
    (prices,) = complete.values()
    return [prices[spec.event_name] for spec in METER_SPECS]
