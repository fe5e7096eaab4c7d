"""Invoices: what a subscription's period bills, the renewal invoice, and its payment.

Stripe rules followed:
- metered prices bill in arrears: the usage of the period that ends, as the meter aggregates
  it (`default_aggregation.formula`: `sum`, `count`, `last`; STRIPE.md), from the meter events
  Stripe accepted for the customer with a timestamp in the period, leaving out cancelled ones
  and those its asynchronous validation refused; licensed prices bill in advance, quantity
  times unit amount, for the next period (docs: billing/subscriptions/usage-based);
- each line is rounded to a whole minor unit after multiplying, half up (0.05 cents x 30 =
  1.5, "rounded up to 2 cents"), and the invoice is the sum of its rounded lines (docs:
  billing/subscriptions/decimal-amounts, "Rounding");
- a renewal moves the subscription to its next period and makes an invoice for the period
  that ended (`billing_reason` `subscription_cycle`) with `period_start/end` of that period;
  its `parent.subscription_details.metadata` is "an immutable snapshot of the subscription
  metadata at the time of invoice finalization" (api/invoices/object);
- a failed payment leaves the invoice `open` with `attempted` and `attempt_count`, and the
  subscription `past_due` ("payment on the latest finalized invoice either failed or wasn't
  attempted", api/subscriptions/object `status`); a payment that succeeds makes the invoice
  `paid` (`amount_paid`, `status_transitions.paid_at`) and the subscription `active` again.

Assumed where the docs are silent or disagree:
- a period's usage is the events with `period_start <= timestamp < period_end` (half-open), so
  an event at the very end of one period bills in the next. The meter event summary page says
  both "`end_time` (exclusive)" and "events within `start_time` (inclusive) and `end_time`
  (inclusive)" (api/billing/meter-event-summary/object); the stand-in reads it as exclusive;
- "rounded to the nearest whole cent" (decimal-amounts) gives one example, 1.5 -> 2, which
  half-up and half-even (banker's) rounding both give; the stand-in rounds half up (2.5 -> 3);
- fractional usage (decimal meter values) is billed exactly; the line's `quantity` (whole in
  basil) is that usage truncated, the exact one `quantity_decimal` (as later versions truncate
  it, changelog/dahlia/2026-03-25/invoice-items-decimal-quantity);
- the invoice is made, finalized and attempted the moment the period ends: Stripe's draft
  "finalized about an hour after creation" (billing/subscriptions/overview, "invoice
  lifecycle") is not modelled;
- the next retry is 3 days after a failure (Smart Retries choose their own times);
  `invoice.created` and `invoice.finalized` are not sent (only the payment events), and the
  period's move and the status change are one `customer.subscription.updated`; the first
  invoice Stripe makes when a subscription starts is not modelled.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from .billing_records import Invoice, InvoiceLine, Subscription
from .errors import no_such
from .periods import period
from .records import new_id
from .state import StandinState
from .summaries import aggregate

RETRY_AFTER_SECONDS = 3 * 24 * 3600


def usage_lines(
    state: StandinState, subscription: Subscription, number: int, *, renews: bool = True
) -> list[InvoiceLine]:
    """What the end of period `number` bills: each metered item's usage over that period and,
    if the subscription `renews`, each licensed item for the period after it. Call with
    `state.lock` held."""
    lines = []
    for item in subscription.items:
        if item.quantity is not None and not renews:
            continue
        price = state.prices[item.price]
        start, end = period(
            subscription.billing_cycle_anchor, price.interval, price.interval_count, number
        )
        if item.quantity is None:
            quantity = _usage(state, subscription.customer, price.meter, start, end)
        else:
            quantity = Decimal(item.quantity)
            start, end = period(
                subscription.billing_cycle_anchor,
                price.interval,
                price.interval_count,
                number + 1,
            )
        exact = quantity * price.unit_amount_decimal
        lines.append(
            InvoiceLine(
                id=new_id("il_", 24),
                subscription_item=item.id,
                price=price.id,
                quantity=quantity,
                amount=int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)),
                period_start=start,
                period_end=end,
            )
        )
    return lines


def _usage(
    state: StandinState, customer: str, meter_id: str | None, start: int, end: int
) -> Decimal:
    meter = state.meters.get(meter_id or "")
    if meter is None:
        return Decimal(0)
    counted = [
        event
        for event in state.events
        if event.counts
        and event.meter_id == meter.id
        and event.customer == customer
        and start <= event.timestamp < end
    ]
    return aggregate(meter, counted)


def current_period(state: StandinState, subscription: Subscription) -> tuple[int, int]:
    """The span of the items' current periods (they share one unless their intervals differ)."""
    return (
        min(item.current_period_start for item in subscription.items),
        max(item.current_period_end for item in subscription.items),
    )


def renew(state: StandinState, subscription: Subscription) -> Invoice:
    """The current period ends: the clock moves to its end if it is not there yet, the
    subscription moves on, and the invoice for the period that ended is made (open, not yet
    attempted). Call with `state.lock` held."""
    start, end = current_period(state, subscription)
    now = state.clock.now()
    if now < end:
        state.clock.advance(end - now)
    lines = usage_lines(state, subscription, subscription.period_number)
    subscription.period_number += 1
    for item in subscription.items:
        price = state.prices[item.price]
        item.current_period_start, item.current_period_end = period(
            subscription.billing_cycle_anchor,
            price.interval,
            price.interval_count,
            subscription.period_number,
        )
    customer_name, customer_email = customer_details(state, subscription.customer)
    invoice = Invoice(
        id=new_id("in_", 24),
        customer=subscription.customer,
        subscription=subscription.id,
        created=int(state.clock.now()),
        currency=subscription.currency,
        period_start=start,
        period_end=end,
        lines=lines,
        billing_reason="subscription_cycle",
        number=f"STANDIN-{len(state.invoices) + 1:04d}",
        subscription_metadata=dict(subscription.metadata),
        customer_name=customer_name,
        customer_email=customer_email,
    )
    state.invoices[invoice.id] = invoice
    subscription.latest_invoice = invoice.id
    return invoice


def record_failed_attempt(state: StandinState, invoice: Invoice) -> None:
    invoice.attempt_count += 1
    invoice.next_payment_attempt = int(state.clock.now()) + RETRY_AFTER_SECONDS


def record_payment(state: StandinState, invoice: Invoice) -> None:
    invoice.attempt_count += 1
    invoice.status = "paid"
    invoice.paid_at = int(state.clock.now())
    invoice.next_payment_attempt = None


def open_invoice(state: StandinState, subscription: Subscription) -> Invoice | None:
    """The subscription's latest invoice while it is still unpaid."""
    invoice = state.invoices.get(subscription.latest_invoice or "")
    return invoice if invoice is not None and invoice.status == "open" else None


def customer_details(state: StandinState, customer_id: str) -> tuple[str | None, str | None]:
    """The customer's name and email as an invoice copies them. Call with `state.lock` held."""
    customer = state.customers.get(customer_id)
    if customer is None or customer.deleted:
        return None, None
    return customer.name, customer.email


def get_invoice(state: StandinState, invoice_id: str) -> Invoice:
    with state.lock:
        invoice = state.invoices.get(invoice_id)
        if invoice is None:
            raise no_such("invoice", invoice_id)
        return invoice
