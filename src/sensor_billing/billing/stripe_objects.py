"""Reading the fields billing state needs out of Stripe objects, across API versions.

API version 2025-03-31 ("basil") moved fields this service reads (docs: changelog/basil):
`invoice.subscription` to `invoice.parent.subscription_details.subscription`, and a
subscription's `current_period_start/end` onto each subscription item. Events keep the shape of
the API version they were created with, so both shapes are read.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# The widths of the columns these values are stored in (db/schema/billing.py): a longer value
# is not one Stripe sends, so it reads as unreadable, like a missing one.
MAX_ID_LENGTH = 255
MAX_STATUS_LENGTH = 32
MAX_LOOKUP_KEY_LENGTH = 200
# Invoice amounts are BIGINT columns; a number outside them is not an amount Stripe sends.
MIN_AMOUNT, MAX_AMOUNT = -(2**63), 2**63 - 1


def _text(value: Any, max_length: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= max_length else None


def object_id(value: Any) -> str | None:
    """An id from a field that holds either the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return _text(value, MAX_ID_LENGTH)


# The last second a datetime holds (9999-12-31T23:59:59Z); a larger number is not a time.
MAX_UNIX_SECONDS = 253_402_300_799


def from_unix(value: Any) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_UNIX_SECONDS:
        return datetime.fromtimestamp(value, UTC)
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(subscription: dict[str, Any]) -> list[dict[str, Any]]:
    data = _dict(subscription.get("items")).get("data")
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


@dataclass(frozen=True, slots=True)
class PriceSnapshot:
    id: str
    currency: str
    unit_amount_decimal: Decimal | None
    meter_id: str | None
    lookup_key: str | None


# Stripe's unit_amount_decimal: minor units, at most 12 decimal places (docs: api/prices/object).
_DECIMAL_AMOUNT = re.compile(r"^\d{1,18}(\.\d{1,12})?$")


def _unit_amount(price: dict[str, Any]) -> Decimal | None:
    text = price.get("unit_amount_decimal")
    if isinstance(text, str) and _DECIMAL_AMOUNT.match(text):
        return Decimal(text)
    whole = price.get("unit_amount")
    if isinstance(whole, int) and not isinstance(whole, bool) and 0 <= whole <= MAX_AMOUNT:
        return Decimal(whole)
    return None


def read_price(price: dict[str, Any]) -> PriceSnapshot | None:
    """A full Price object (a subscription item's `price`); None when it is only an id or
    lacks its id or currency."""
    price_id = _text(price.get("id"), MAX_ID_LENGTH)
    currency = _text(price.get("currency"), 3)
    if price_id is None or currency is None:
        return None
    recurring = _dict(price.get("recurring"))
    return PriceSnapshot(
        id=price_id,
        currency=currency.lower(),
        unit_amount_decimal=_unit_amount(price),
        meter_id=object_id(recurring.get("meter")),
        lookup_key=_text(price.get("lookup_key"), MAX_LOOKUP_KEY_LENGTH),
    )


@dataclass(frozen=True, slots=True)
class SubscriptionSnapshot:
    id: str
    customer_id: str
    status: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    metered_price_ids: list[str]
    cancel_at_period_end: bool
    ended_at: datetime | None
    # The metered prices' full objects, where the event carries them.
    metered_prices: tuple[PriceSnapshot, ...] = ()


def subscription_period(subscription: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    start = from_unix(subscription.get("current_period_start"))
    end = from_unix(subscription.get("current_period_end"))
    if start is not None and end is not None:
        return start, end
    # Basil and later: per item. Items of one subscription share a billing cycle unless their
    # intervals differ; the span covering all of them is what usage must fall into.
    starts = [
        s for s in (from_unix(i.get("current_period_start")) for i in _items(subscription)) if s
    ]
    ends = [e for e in (from_unix(i.get("current_period_end")) for i in _items(subscription)) if e]
    return (min(starts) if starts else None, max(ends) if ends else None)


def _metered_items_prices(subscription: dict[str, Any]) -> list[dict[str, Any]]:
    """Items' prices billed by usage: legacy `usage_type=metered` or backed by a Billing Meter."""
    prices = []
    for item in _items(subscription):
        price = _dict(item.get("price")) or _dict(item.get("plan"))
        recurring = _dict(price.get("recurring")) or price
        if recurring.get("usage_type") == "metered" or bool(recurring.get("meter")):
            prices.append(price)
    return prices


def metered_price_ids(subscription: dict[str, Any]) -> list[str]:
    ids = (object_id(price.get("id")) for price in _metered_items_prices(subscription))
    return sorted({price_id for price_id in ids if price_id is not None})


def metered_prices(subscription: dict[str, Any]) -> tuple[PriceSnapshot, ...]:
    read = (read_price(price) for price in _metered_items_prices(subscription))
    return tuple({price.id: price for price in read if price is not None}.values())


def read_subscription(subscription: dict[str, Any]) -> SubscriptionSnapshot | None:
    sub_id = object_id(subscription.get("id"))
    customer_id = object_id(subscription.get("customer"))
    status = _text(subscription.get("status"), MAX_STATUS_LENGTH)
    if sub_id is None or customer_id is None or status is None:
        return None
    start, end = subscription_period(subscription)
    return SubscriptionSnapshot(
        id=sub_id,
        customer_id=customer_id,
        status=status,
        current_period_start=start,
        current_period_end=end,
        metered_price_ids=metered_price_ids(subscription),
        cancel_at_period_end=bool(subscription.get("cancel_at_period_end")),
        ended_at=from_unix(subscription.get("ended_at")),
        metered_prices=metered_prices(subscription),
    )


def invoice_subscription_id(invoice: dict[str, Any]) -> str | None:
    """The invoice's subscription in the pre-basil, basil, or line-level shape."""
    legacy = object_id(invoice.get("subscription"))
    if legacy:
        return legacy
    details = _dict(_dict(invoice.get("parent")).get("subscription_details"))
    current = object_id(details.get("subscription"))
    if current:
        return current
    lines = _dict(invoice.get("lines")).get("data")
    for line in lines if isinstance(lines, list) else []:
        item = _dict(_dict(_dict(line).get("parent")).get("subscription_item_details"))
        from_line = object_id(item.get("subscription"))
        if from_line:
            return from_line
    return None


def _amount(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and MIN_AMOUNT <= value <= MAX_AMOUNT:
        return value
    return None


@dataclass(frozen=True, slots=True)
class InvoiceSnapshot:
    id: str
    customer_id: str
    subscription_id: str | None
    amount_due: int | None
    amount_paid: int | None
    currency: str | None


def read_invoice(invoice: dict[str, Any]) -> InvoiceSnapshot | None:
    invoice_id = object_id(invoice.get("id"))
    customer_id = object_id(invoice.get("customer"))
    if invoice_id is None or customer_id is None:
        return None
    currency = _text(invoice.get("currency"), 3)
    return InvoiceSnapshot(
        id=invoice_id,
        customer_id=customer_id,
        subscription_id=invoice_subscription_id(invoice),
        amount_due=_amount(invoice.get("amount_due")),
        amount_paid=_amount(invoice.get("amount_paid")),
        currency=currency,
    )


def checkout_organization_id(session: dict[str, Any]) -> uuid.UUID | None:
    """The organization a Checkout Session was opened for: metadata first, then
    `client_reference_id` (both set by our side when it creates the session)."""
    metadata = _dict(session.get("metadata"))
    for candidate in (metadata.get("organization_id"), session.get("client_reference_id")):
        if isinstance(candidate, str):
            try:
                return uuid.UUID(candidate)
            except ValueError:
                continue
    return None
