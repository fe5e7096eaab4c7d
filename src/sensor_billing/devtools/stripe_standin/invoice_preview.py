"""`POST /v1/invoices/create_preview`: what the subscription's current period will bill.

Stripe rules followed:
- since API version 2025-03-31 a preview is of a subscription, not of a customer: a request
  without `subscription` (or the schedule and item forms the stand-in does not model) is
  refused, "You must provide at least one of: `subscription`, `schedule`,
  `subscription_details.items`, `schedule_details.phases`, `invoice_items`." (docs:
  changelog/basil/2025-03-31/invoice-preview-api-deprecations; the wording as Stripe answers
  it, stripe-node#2347);
- a subscription with nothing left to bill answers 404 `invoice_upcoming_none`, "There is no
  upcoming invoice on the specified customer to preview. Only customers with active
  subscriptions or pending invoice items have invoices that can be previewed." (docs:
  error-codes);
- the lines are those the renewal at the end of the current period will bill (invoices.py):
  each metered price's accepted usage in the period, aggregated by its meter's formula, times
  its unit amount, each line rounded half up to a whole minor unit; `amount_due`, `subtotal`
  and `total` are their sum; `period_start/end` is the current period; basil shapes
  (`parent.subscription_details.subscription`, lines' `pricing.price_details.price`).

Assumed where the docs are silent: a preview, never finalized, carries the subscription's
metadata as it is now in `parent.subscription_details.metadata`; a canceled subscription has
nothing left to bill; one set to cancel at its period end (`cancel_at_period_end`,
"cancel at the end of the current period", api/subscriptions/object) bills that period's usage
and no seats for a next period, and a seats-only one has no upcoming invoice
(`invoice_upcoming_none`); a `customer` that is not the subscription's is refused (param
`subscription`); the preview's id is `upcoming_in_...` and its status `draft`; it is not stored
and `GET /v1/invoices/{id}` does not find it; parameters the stand-in does not model
(`subscription_details`, `invoice_items`, ...) are refused saying so.
"""

from __future__ import annotations

from typing import Any

from stripe.params import InvoiceCreatePreviewParams

from .billing_records import Invoice
from .errors import InvalidRequestError, invalid_param, no_such_reference
from .forms import Form, optional_str, refuse_unmodelled
from .invoices import current_period, customer_details, usage_lines
from .records import new_id
from .state import StandinState
from .stripe_params import stripe_takes

_PARAMS = frozenset({"customer", "subscription", "expand"})
NEEDS_A_SUBSCRIPTION = (
    "You must provide at least one of: `subscription`, `schedule`, "
    "`subscription_details.items`, `schedule_details.phases`, `invoice_items`."
)
NOTHING_UPCOMING = (
    "There is no upcoming invoice on the specified customer to preview. Only customers with "
    "active subscriptions or pending invoice items have invoices that can be previewed."
)


def preview_invoice(state: StandinState, form: Form) -> dict[str, Any]:
    refuse_unmodelled(form, _PARAMS, stripe_takes(InvoiceCreatePreviewParams))
    customer_id = optional_str(form, "customer")
    subscription_id = optional_str(form, "subscription")
    with state.lock:
        if customer_id is not None:
            customer = state.customers.get(customer_id)
            if customer is None or customer.deleted:
                raise no_such_reference("customer", customer_id, "customer")
        if subscription_id is None:
            raise InvalidRequestError(NEEDS_A_SUBSCRIPTION)
        subscription = state.subscriptions.get(subscription_id)
        if subscription is None:
            raise no_such_reference("subscription", subscription_id, "subscription")
        if customer_id is not None and subscription.customer != customer_id:
            raise invalid_param(
                "subscription",
                f"The subscription {subscription_id} does not belong to customer {customer_id}.",
            )
        if subscription.status == "canceled":
            raise InvalidRequestError(NOTHING_UPCOMING, code="invoice_upcoming_none", status=404)
        # Set to cancel at its period end, it has no next period to bill seats for in advance.
        lines = usage_lines(
            state,
            subscription,
            subscription.period_number,
            renews=not subscription.cancel_at_period_end,
        )
        if not lines:
            raise InvalidRequestError(NOTHING_UPCOMING, code="invoice_upcoming_none", status=404)
        start, end = current_period(state, subscription)
        customer_name, customer_email = customer_details(state, subscription.customer)
        preview = Invoice(
            id=new_id("upcoming_in_", 24),
            customer=subscription.customer,
            subscription=subscription.id,
            created=int(state.clock.now()),
            currency=subscription.currency,
            period_start=start,
            period_end=end,
            lines=lines,
            billing_reason="upcoming",
            number=None,
            subscription_metadata=dict(subscription.metadata),
            customer_name=customer_name,
            customer_email=customer_email,
            status="draft",
            next_payment_attempt=end,
        )
        return preview.to_stripe(state.prices)
