"""Products and recurring prices: what `sensor-billing stripe setup` creates and looks up.

Stripe rules followed (docs: api/products/create, api/prices/create, api/prices/list):
- a product needs `name`; a caller-chosen `id` must be unused;
- a price needs `currency`, an existing `product`, and one of `unit_amount` /
  `unit_amount_decimal` (cents, at most 12 decimal places);
- a metered price (`recurring[usage_type]=metered`) names an existing Billing Meter in
  `recurring[meter]` (required since API version 2025-03-31, which removed usage records);
- a `lookup_key` (at most 200 characters) belongs to one price; taking it from another needs
  `transfer_lookup_key=true`;
- `GET /v1/prices` filters by `active`, `currency`, `product`, `type` and up to 10
  `lookup_keys`. Prices and products are listed newest first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Literal
from urllib.parse import parse_qsl

from .errors import InvalidRequestError, invalid_param, missing_param, no_such, no_such_reference
from .forms import (
    Form,
    optional_bool,
    optional_int,
    optional_map,
    optional_str,
    required_str,
    sub_form,
)
from .records import Price, Product, new_id
from .state import StandinState

MAX_LOOKUP_KEY_LENGTH = 200
MAX_LOOKUP_KEYS = 10
_INTERVALS = ("day", "week", "month", "year")
_CURRENCY = re.compile(r"^[a-z]{3}$")
_DECIMAL = re.compile(r"^\d+(\.\d{1,12})?$")


def create_product(state: StandinState, form: Form) -> Product:
    name = required_str(form, "name")
    chosen_id = optional_str(form, "id")
    with state.lock:
        if chosen_id is not None and chosen_id in state.products:
            raise InvalidRequestError(
                "Product already exists.", code="resource_already_exists", param="id"
            )
        product = Product(
            id=chosen_id or new_id("prod_", 14),
            name=name,
            created=int(state.clock.now()),
            description=optional_str(form, "description"),
            active=optional_bool(form, "active") is not False,
            metadata=optional_map(form, "metadata") or {},
        )
        state.products[product.id] = product
        return product


def get_product(state: StandinState, product_id: str) -> Product:
    with state.lock:
        product = state.products.get(product_id)
        if product is None:
            raise no_such("product", product_id)
        return product


def list_products(state: StandinState, query: Form) -> list[Product]:
    active = optional_bool(query, "active")
    with state.lock:
        products = [p for p in state.products.values() if active is None or p.active == active]
    return products[::-1]


def _unit_amount(form: Form) -> Decimal:
    whole = optional_int(form, "unit_amount")
    fraction = optional_str(form, "unit_amount_decimal")
    if whole is not None and fraction is not None:
        raise invalid_param(
            "unit_amount_decimal", "Only one of unit_amount and unit_amount_decimal can be set."
        )
    if whole is not None:
        if whole < 0:
            raise invalid_param("unit_amount", "This value must be greater than or equal to 0.")
        return Decimal(whole)
    if fraction is None:
        raise missing_param("unit_amount")
    if not _DECIMAL.match(fraction):
        raise invalid_param("unit_amount_decimal", f"Invalid decimal: {fraction}")
    try:
        return Decimal(fraction)
    except InvalidOperation:
        raise invalid_param("unit_amount_decimal", f"Invalid decimal: {fraction}") from None


def create_price(state: StandinState, form: Form) -> Price:
    currency = required_str(form, "currency").lower()
    if not _CURRENCY.match(currency):
        raise invalid_param("currency", f"Invalid currency: {currency}.")
    product_id = required_str(form, "product")
    amount = _unit_amount(form)
    recurring = sub_form(form, "recurring")
    if recurring is None:
        # One-time prices exist in Stripe; this project only bills by subscription.
        raise missing_param("recurring")
    interval = required_str(recurring, "interval", param="recurring[interval]")
    if interval not in _INTERVALS:
        raise invalid_param("recurring[interval]", f"Invalid recurring[interval]: {interval}")
    interval_count = optional_int(recurring, "interval_count") or 1
    raw_usage = optional_str(recurring, "usage_type") or "licensed"
    usage_type: Literal["licensed", "metered"]
    if raw_usage == "metered":
        usage_type = "metered"
    elif raw_usage == "licensed":
        usage_type = "licensed"
    else:
        raise invalid_param(
            "recurring[usage_type]", "recurring[usage_type] must be licensed or metered."
        )
    meter_id = optional_str(recurring, "meter")
    if usage_type == "metered" and meter_id is None:
        raise missing_param("recurring[meter]")
    if usage_type == "licensed" and meter_id is not None:
        raise invalid_param(
            "recurring[meter]", "recurring[meter] can only be set when usage_type is metered."
        )
    lookup_key = optional_str(form, "lookup_key")
    if lookup_key is not None and len(lookup_key) > MAX_LOOKUP_KEY_LENGTH:
        raise invalid_param("lookup_key", "lookup_key must be at most 200 characters.")
    transfer = optional_bool(form, "transfer_lookup_key") is True
    with state.lock:
        if product_id not in state.products:
            raise no_such_reference("product", product_id, "product")
        if meter_id is not None and meter_id not in state.meters:
            raise no_such_reference("billing.meter", meter_id, "recurring[meter]")
        holder = _price_with_lookup_key(state, lookup_key)
        if holder is not None:
            if not transfer:
                raise invalid_param(
                    "lookup_key",
                    f"A price (`{holder.id}`) already uses that lookup key.",
                )
            holder.lookup_key = None
        price = Price(
            id=new_id("price_"),
            product=product_id,
            currency=currency,
            unit_amount_decimal=amount,
            interval=interval,
            interval_count=interval_count,
            usage_type=usage_type,
            meter=meter_id,
            created=int(state.clock.now()),
            lookup_key=lookup_key,
            nickname=optional_str(form, "nickname"),
            active=optional_bool(form, "active") is not False,
            metadata=optional_map(form, "metadata") or {},
        )
        state.prices[price.id] = price
        return price


def _price_with_lookup_key(state: StandinState, lookup_key: str | None) -> Price | None:
    if lookup_key is None:
        return None
    for price in state.prices.values():
        if price.lookup_key == lookup_key:
            return price
    return None


def get_price(state: StandinState, price_id: str) -> Price:
    with state.lock:
        price = state.prices.get(price_id)
        if price is None:
            raise no_such("price", price_id)
        return price


def lookup_keys_of(raw_query: str) -> list[str] | None:
    """`lookup_keys[0]=a&lookup_keys[1]=b` (the SDK) or `lookup_keys[]=a&lookup_keys[]=b`.

    Read from the raw query: the bracket parser keeps one value per key, so `[]` repeats
    would overwrite each other there."""
    keys = [v for k, v in parse_qsl(raw_query, keep_blank_values=True) if _is_lookup_key(k)]
    if not keys:
        return None
    if len(keys) > MAX_LOOKUP_KEYS:
        raise invalid_param("lookup_keys", f"You can specify up to {MAX_LOOKUP_KEYS} lookup_keys.")
    return keys


def _is_lookup_key(name: str) -> bool:
    return re.fullmatch(r"lookup_keys\[\d*\]", name) is not None


def list_prices(state: StandinState, query: Form, lookup_keys: Sequence[str] | None) -> list[Price]:
    active = optional_bool(query, "active")
    currency = optional_str(query, "currency")
    product = optional_str(query, "product")
    price_type = optional_str(query, "type")
    with state.lock:
        prices = [
            p
            for p in state.prices.values()
            if (active is None or p.active == active)
            and (currency is None or p.currency == currency.lower())
            and (product is None or p.product == product)
            and (price_type is None or price_type == "recurring")
            and (lookup_keys is None or p.lookup_key in lookup_keys)
        ]
    return prices[::-1]
