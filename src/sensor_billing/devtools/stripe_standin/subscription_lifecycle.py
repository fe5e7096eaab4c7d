"""What happens to a subscription over time, made to happen now by the control API.

Each transition leaves the objects as Stripe would show them and makes the events Stripe sends
(invoices.py for the invoice rules):
- `payment_failed`: the open invoice's payment fails again, or, without one, the period renews
  and the renewal invoice's first attempt fails: `invoice.payment_failed`, then
  `customer.subscription.updated` (the new period, status `past_due`);
- `payment_succeeded`: the open invoice is paid, or, without one, the period renews and is paid
  at once: `invoice.paid`, then `customer.subscription.updated` when the status or the period
  changed (back to `active`);
- `mark_unpaid`: Stripe's retries ran out and the subscription settings say "mark unpaid":
  status `unpaid`, the invoice stays open with no next attempt; `customer.subscription.updated`;
- `end`: the subscription ends now, as when retries run out with "cancel", or at the end of
  its period when `cancel_at_period_end` is set (the clock moves to that end):
  `customer.subscription.deleted`, `cancellation_details.reason` `payment_failed` or
  `cancellation_requested`.

A canceled subscription takes none of them (Stripe never reopens one). With the stand-in's
clock frozen (`POST /_standin/clock {"freeze": true}`), several transitions make events of the
same second, each with the snapshot of its moment.
"""

from __future__ import annotations

from .billing_records import Subscription
from .invoices import open_invoice, record_failed_attempt, record_payment, renew
from .state import StandinState
from .subscriptions import end_now, get_subscription, subscription_snapshot
from .webhook_events import emit


class TransitionRefusedError(Exception):
    """The transition does not apply to the subscription as it is."""


def _live(state: StandinState, subscription_id: str) -> Subscription:
    subscription = get_subscription(state, subscription_id)
    if subscription.status == "canceled":
        raise TransitionRefusedError(f"Subscription {subscription.id} is canceled.")
    return subscription


def payment_failed(state: StandinState, subscription_id: str) -> Subscription:
    with state.lock:
        subscription = _live(state, subscription_id)
        before = subscription_snapshot(state, subscription)
        invoice = open_invoice(state, subscription) or renew(state, subscription)
        record_failed_attempt(state, invoice)
        if subscription.status == "active":
            subscription.status = "past_due"
        emit(state, "invoice.payment_failed", invoice.to_stripe(state.prices))
        _emit_if_changed(state, subscription, before)
        return subscription


def payment_succeeded(state: StandinState, subscription_id: str) -> Subscription:
    with state.lock:
        subscription = _live(state, subscription_id)
        before = subscription_snapshot(state, subscription)
        invoice = open_invoice(state, subscription) or renew(state, subscription)
        record_payment(state, invoice)
        subscription.status = "active"
        emit(state, "invoice.paid", invoice.to_stripe(state.prices))
        _emit_if_changed(state, subscription, before)
        return subscription


def mark_unpaid(state: StandinState, subscription_id: str) -> Subscription:
    with state.lock:
        subscription = _live(state, subscription_id)
        invoice = open_invoice(state, subscription)
        if invoice is None:
            raise TransitionRefusedError(
                f"Subscription {subscription.id} has no open invoice: a payment must fail first."
            )
        before = subscription_snapshot(state, subscription)
        invoice.next_payment_attempt = None
        subscription.status = "unpaid"
        _emit_if_changed(state, subscription, before)
        return subscription


def end(state: StandinState, subscription_id: str, reason: str | None) -> Subscription:
    with state.lock:
        subscription = _live(state, subscription_id)
        if reason is None:
            reason = (
                "cancellation_requested" if subscription.cancel_at_period_end else "payment_failed"
            )
        if subscription.cancel_at_period_end:
            period_end = max(item.current_period_end for item in subscription.items)
            now = state.clock.now()
            if now < period_end:
                state.clock.advance(period_end - now)
        end_now(state, subscription, reason=reason)
        return subscription


def _emit_if_changed(
    state: StandinState, subscription: Subscription, before: dict[str, object]
) -> None:
    after = subscription_snapshot(state, subscription)
    if after != before:
        emit(state, "customer.subscription.updated", after, before)
