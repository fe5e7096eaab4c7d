"""The invoice preview: what Stripe would bill a subscription's current period if it ended now.

Stripe facts (docs: api/invoices/create_preview; changelog/basil/2025-03-31/
invoice-preview-api-deprecations): `POST /v1/invoices/create_preview` replaced
`GET /v1/invoices/upcoming` in API version 2025-03-31 and, from then on, needs the subscription
(`subscription`) beside the `customer`; it creates nothing ("the invoice has not yet been
created"). The answer is an Invoice: `amount_due`, `subtotal`, `total` in the currency's minor
units, `currency`, and `lines` (each with `amount` and `quantity`, and its price under
`pricing.price_details.price` from 2025-03-31 on, under `price` before).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from sensor_billing.billing.stripe_objects import object_id
from sensor_billing.errors import StripeRefusedError
from sensor_billing.stripe_api.meter_events import map_stripe_error


@dataclass(frozen=True, slots=True)
class PreviewLine:
    price_id: str | None
    quantity: int | None
    amount: int


@dataclass(frozen=True, slots=True)
class InvoicePreview:
    amount_due: int
    subtotal: int
    total: int
    currency: str
    lines: tuple[PreviewLine, ...]


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _line_price(line: dict[str, Any]) -> str | None:
    pricing = line.get("pricing")
    details = pricing.get("price_details") if isinstance(pricing, dict) else None
    if isinstance(details, dict) and object_id(details.get("price")):
        return object_id(details.get("price"))
    return object_id(line.get("price"))


def read_preview(invoice: dict[str, Any]) -> InvoicePreview:
    """The figures of a preview Invoice; `StripeRefusedError` when it lacks one of them (not
    an answer Stripe documents)."""
    amounts = {name: _integer(invoice.get(name)) for name in ("amount_due", "subtotal", "total")}
    currency = invoice.get("currency")
    if any(value is None for value in amounts.values()) or not isinstance(currency, str):
        raise StripeRefusedError(
            "the invoice preview has no amount_due, subtotal, total or currency"
        )
    lines_list = invoice.get("lines")
    data = lines_list.get("data") if isinstance(lines_list, dict) else None
    lines = tuple(
        PreviewLine(
            _line_price(line), _integer(line.get("quantity")), _integer(line.get("amount")) or 0
        )
        for line in (data if isinstance(data, list) else [])
        if isinstance(line, dict)
    )
    return InvoicePreview(
        amount_due=amounts["amount_due"] or 0,
        subtotal=amounts["subtotal"] or 0,
        total=amounts["total"] or 0,
        currency=currency,
        lines=lines,
    )


async def preview_invoice(
    client: stripe.StripeClient, *, customer_id: str, subscription_id: str
) -> InvoicePreview:
    """Raises `StripeUnavailableError` (429, 409, 5xx, no answer) or `StripeRefusedError`."""
    try:
        invoice = await client.v1.invoices.create_preview_async(
            {"customer": customer_id, "subscription": subscription_id}
        )
    except stripe.StripeError as error:
        raise map_stripe_error(error) from error
    return read_preview(invoice.to_dict())
