"""What the stand-in stores for billing: Checkout Sessions, subscriptions, webhook endpoints and
the snapshot events it sends them.

Shapes follow the API reference at version 2025-03-31 ("basil") and later: a subscription's
`current_period_start/end` live on each item (docs: changelog/basil/2025-03-31/
deprecate-subscription-current-period-start-and-end). Objects that embed others (a subscription
item's price) are rendered by the module that owns them, which can read the other stores.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from .records import Price
from .unmodelled_fields import (
    checkout_session_fields,
    invoice_fields,
    invoice_line_fields,
    subscription_fields,
    subscription_item_fields,
    with_unmodelled,
)

# The version events are rendered as: the first whose shapes the stand-in follows.
API_VERSION = "2025-03-31.basil"

SessionStatus = Literal["open", "complete", "expired"]
SubscriptionStatus = Literal["active", "past_due", "unpaid", "canceled"]


@dataclass(frozen=True)
class CheckoutLineItem:
    price: str
    quantity: int | None  # None for a metered price, which takes no quantity


@dataclass
class CheckoutSession:
    id: str
    created: int
    expires_at: int
    customer: str | None
    line_items: list[CheckoutLineItem]
    currency: str
    amount_total: int
    success_url: str
    cancel_url: str | None
    client_reference_id: str | None
    metadata: dict[str, str]
    subscription_metadata: dict[str, str]
    url: str
    status: SessionStatus = "open"
    subscription: str | None = None
    # Who paid, as the page collected it; None until the session is complete.
    customer_details: dict[str, Any] | None = None

    def to_stripe(self) -> dict[str, Any]:
        paid = "paid" if self.amount_total else "no_payment_required"
        modelled: dict[str, Any] = {
            "id": self.id,
            "object": "checkout.session",
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": self.amount_total,
            "amount_total": self.amount_total,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": self.cancel_url,
            "client_reference_id": self.client_reference_id,
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "customer_creation": None if self.customer else "always",
            "customer_details": copy.deepcopy(self.customer_details),
            "customer_email": None,
            "expires_at": self.expires_at,
            "invoice": None,
            "livemode": False,
            "locale": None,
            "metadata": dict(self.metadata),
            "mode": "subscription",
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "always",
            "payment_status": paid if self.status == "complete" else "unpaid",
            "status": self.status,
            "subscription": self.subscription,
            "success_url": self.success_url,
            "ui_mode": "hosted",
            # Stripe clears the URL once the session can no longer be paid.
            "url": self.url if self.status == "open" else None,
        }
        return with_unmodelled(modelled, checkout_session_fields())


@dataclass
class SubscriptionItem:
    id: str
    price: str
    quantity: int | None
    created: int
    current_period_start: int
    current_period_end: int
    metadata: dict[str, str] = field(default_factory=dict)

    def to_stripe(self, subscription: str, prices: Mapping[str, Price]) -> dict[str, Any]:
        price = prices[self.price]
        body: dict[str, Any] = {
            "id": self.id,
            "object": "subscription_item",
            "created": self.created,
            "current_period_end": self.current_period_end,
            "current_period_start": self.current_period_start,
            "discounts": [],
            "metadata": dict(self.metadata),
            # Basil still sends the deprecated `plan` beside `price` (stripe 16.1 types it).
            "plan": price.to_plan(),
            "price": price.to_stripe(),
            "subscription": subscription,
            "tax_rates": [],
        }
        if self.quantity is not None:
            # A metered item has no quantity: usage decides what is billed.
            body["quantity"] = self.quantity
        return with_unmodelled(body, subscription_item_fields())


@dataclass
class Subscription:
    id: str
    customer: str
    created: int
    currency: str
    items: list[SubscriptionItem]
    metadata: dict[str, str]
    # Periods count from the anchor (periods.py); `period_number` is the current one.
    billing_cycle_anchor: int
    period_number: int = 0
    status: SubscriptionStatus = "active"
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    ended_at: int | None = None
    cancellation_reason: str | None = None
    cancellation_comment: str | None = None
    cancellation_feedback: str | None = None
    latest_invoice: str | None = None

    def to_stripe(self, prices: Mapping[str, Price]) -> dict[str, Any]:
        items = [item.to_stripe(self.id, prices) for item in self.items]
        modelled: dict[str, Any] = {
            "id": self.id,
            "object": "subscription",
            "application": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": self.billing_cycle_anchor,
            "cancel_at": self.items[0].current_period_end if self.cancel_at_period_end else None,
            "cancel_at_period_end": self.cancel_at_period_end,
            "canceled_at": self.canceled_at,
            "cancellation_details": {
                "comment": self.cancellation_comment,
                "feedback": self.cancellation_feedback,
                "reason": self.cancellation_reason,
            },
            "collection_method": "charge_automatically",
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "days_until_due": None,
            "default_payment_method": None,
            "description": None,
            "discounts": [],
            "ended_at": self.ended_at,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "total_count": len(items),
                "url": f"/v1/subscription_items?subscription={self.id}",
            },
            "latest_invoice": self.latest_invoice,
            "livemode": False,
            "metadata": dict(self.metadata),
            "pause_collection": None,
            "pending_update": None,
            "schedule": None,
            "start_date": self.created,
            "status": self.status,
            "test_clock": None,
            "trial_end": None,
            "trial_start": None,
        }
        return with_unmodelled(modelled, subscription_fields())


@dataclass
class WebhookEndpoint:
    id: str
    url: str
    secret: str
    enabled_events: list[str]
    created: int
    api_version: str | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def takes(self, event_type: str) -> bool:
        return "*" in self.enabled_events or event_type in self.enabled_events

    def to_stripe(self, *, with_secret: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "webhook_endpoint",
            "api_version": self.api_version,
            "application": None,
            "created": self.created,
            "description": self.description,
            "enabled_events": list(self.enabled_events),
            "livemode": False,
            "metadata": dict(self.metadata),
            "status": "enabled",
            "url": self.url,
        }
        if with_secret:
            # "Only returned at creation" (api/webhook_endpoints/object, `secret`).
            body["secret"] = self.secret
        return body


@dataclass(frozen=True)
class SnapshotEvent:
    """A v1 event: the object's full state when the event was made (`data.object`), and for
    `*.updated` what changed, with its earlier values (`data.previous_attributes`,
    webhook_events.previous_attributes)."""

    id: str
    type: str
    created: int
    data_object: dict[str, Any]
    previous_attributes: dict[str, Any] | None
    # (Request-Id, Idempotency-Key) of the API call that made it; (None, None) if automatic.
    request: tuple[str | None, str | None]
    # The endpoints it is sent to: those that existed, and took its type, when it was made.
    endpoint_ids: tuple[str, ...]

    def to_stripe(self, pending_webhooks: int) -> dict[str, Any]:
        """`pending_webhooks`: "number of webhooks that haven't been successfully delivered"
        (api/events/object), now (webhook_events.pending_webhooks)."""
        data: dict[str, Any] = {"object": copy.deepcopy(self.data_object)}
        if self.previous_attributes is not None:
            data["previous_attributes"] = copy.deepcopy(self.previous_attributes)
        return {
            "id": self.id,
            "object": "event",
            "api_version": API_VERSION,
            "created": self.created,
            "data": data,
            "livemode": False,
            "pending_webhooks": pending_webhooks,
            "request": {"id": self.request[0], "idempotency_key": self.request[1]},
            "type": self.type,
        }


@dataclass(frozen=True)
class PortalSession:
    id: str
    customer: str
    created: int
    configuration: str
    return_url: str | None
    locale: str | None
    url: str

    def to_stripe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "billing_portal.session",
            "configuration": self.configuration,
            "created": self.created,
            "customer": self.customer,
            "flow": None,
            "livemode": False,
            "locale": self.locale,
            "on_behalf_of": None,
            "return_url": self.return_url,
            "url": self.url,
        }


@dataclass(frozen=True)
class InvoiceLine:
    """One price's charge on an invoice: usage in arrears (metered) or a seat in advance."""

    id: str
    subscription_item: str
    price: str
    quantity: Decimal
    amount: int
    period_start: int
    period_end: int

    def to_stripe(
        self, invoice: str, subscription: str, currency: str, prices: Mapping[str, Price]
    ) -> dict[str, Any]:
        price = prices[self.price]
        modelled: dict[str, Any] = {
            "id": self.id,
            "object": "line_item",
            "amount": self.amount,
            "currency": currency,
            "description": None,
            "discount_amounts": [],
            "discountable": True,
            "discounts": [],
            "invoice": invoice,
            "livemode": False,
            "metadata": {},
            # Basil moved the line's subscription and price under `parent` and `pricing`
            # (docs: changelog/basil/2025-03-31/invoice-pricing-configurations).
            "parent": {
                "type": "subscription_item_details",
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": subscription,
                    "subscription_item": self.subscription_item,
                },
            },
            "period": {"end": self.period_end, "start": self.period_start},
            "pricing": {
                "type": "price_details",
                "price_details": {"price": price.id, "product": price.product},
                "unit_amount_decimal": format(price.unit_amount_decimal, "f"),
            },
            # Basil's `quantity` is whole; the exact usage is `quantity_decimal` (later versions;
            # "quantity ... truncated to an integer", changelog/dahlia/2026-03-25/
            # invoice-items-decimal-quantity).
            "quantity": int(self.quantity),
            "quantity_decimal": format(self.quantity.normalize(), "f"),
            "subtotal": self.amount,
            "taxes": [],
        }
        return with_unmodelled(modelled, invoice_line_fields())


InvoiceStatus = Literal["draft", "open", "paid"]


@dataclass
class Invoice:
    id: str
    customer: str
    subscription: str
    created: int
    currency: str
    period_start: int
    period_end: int
    lines: list[InvoiceLine]
    billing_reason: str
    number: str | None
    # "An immutable snapshot of the subscription metadata at the time of invoice
    # finalization" (api/invoices/object, parent.subscription_details.metadata).
    subscription_metadata: dict[str, str] = field(default_factory=dict)
    # The customer's, copied when the invoice is made ("once the invoice is finalized, this
    # field will no longer be updated", api/invoices/object `customer_name`).
    customer_name: str | None = None
    customer_email: str | None = None
    status: InvoiceStatus = "open"
    attempt_count: int = 0
    next_payment_attempt: int | None = None
    paid_at: int | None = None

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    def to_stripe(self, prices: Mapping[str, Price]) -> dict[str, Any]:
        paid = self.total if self.status == "paid" else 0
        lines = [
            line.to_stripe(self.id, self.subscription, self.currency, prices) for line in self.lines
        ]
        finalized_at = self.created if self.number else None
        modelled: dict[str, Any] = {
            "id": self.id,
            "object": "invoice",
            "amount_due": self.total,
            "amount_overpaid": 0,
            "amount_paid": paid,
            "amount_remaining": self.total - paid,
            "attempt_count": self.attempt_count,
            "attempted": self.attempt_count > 0,
            "auto_advance": self.status == "open",
            "billing_reason": self.billing_reason,
            "collection_method": "charge_automatically",
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "description": None,
            "discounts": [],
            "due_date": None,
            "ending_balance": 0 if self.number else None,
            "hosted_invoice_url": None,
            "id_preview": None if self.number else "upcoming",
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "total_count": len(lines),
                "url": f"/v1/invoices/{self.id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": self.next_payment_attempt,
            "number": self.number,
            # Basil: the subscription is under `parent` (changelog/basil, STRIPE.md).
            "parent": {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {
                    "metadata": dict(self.subscription_metadata),
                    "subscription": self.subscription,
                    "subscription_proration_date": None,
                },
            },
            "period_end": self.period_end,
            "period_start": self.period_start,
            "starting_balance": 0,
            "status": self.status,
            "status_transitions": {
                "finalized_at": finalized_at,
                "marked_uncollectible_at": None,
                "paid_at": self.paid_at,
                "voided_at": None,
            },
            "subtotal": self.total,
            "subtotal_excluding_tax": self.total,
            "total": self.total,
            "total_excluding_tax": self.total,
            "customer_email": self.customer_email,
            "customer_name": self.customer_name,
            "effective_at": finalized_at,
            "webhooks_delivered_at": finalized_at,
        }
        return with_unmodelled(modelled, invoice_fields())
