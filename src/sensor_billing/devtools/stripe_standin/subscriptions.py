"""Subscriptions: started by a completed Checkout Session, read, listed, updated and canceled.

Stripe rules followed (docs: api/subscriptions/object, .../list, .../update, .../cancel):
- one item per price, each with its own `current_period_start/end` (basil and later), the
  period counted from the billing cycle anchor (periods.py);
- the list shows subscriptions that are not canceled unless `status` asks (`all`, or one of
  the statuses), newest first;
- an update sets `cancel_at_period_end` and merges `metadata`; a canceled subscription "can
  only update its cancellation_details and metadata";
- canceling ends the subscription now: `status` `canceled`, `canceled_at` and `ended_at` set,
  `customer.subscription.deleted` sent; canceling it again answers "No such subscription"
  (resource_missing), as Stripe does for a subscription that already ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .billing_records import CheckoutLineItem, Subscription, SubscriptionItem
from .errors import no_such
from .periods import period
from .records import new_id
from .state import StandinState


def start_subscription(
    state: StandinState,
    *,
    customer: str,
    line_items: Sequence[CheckoutLineItem],
    currency: str,
    metadata: dict[str, str],
) -> Subscription:
    """A new active subscription anchored now. Call with `state.lock` held."""
    now = int(state.clock.now())
    subscription_id = new_id("sub_", 24)
    items = []
    for line in line_items:
        price = state.prices[line.price]
        start, end = period(now, price.interval, price.interval_count, 0)
        items.append(
            SubscriptionItem(
                id=new_id("si_", 14),
                price=price.id,
                quantity=line.quantity,
                created=now,
                current_period_start=start,
                current_period_end=end,
            )
        )
    subscription = Subscription(
        id=subscription_id,
        customer=customer,
        created=now,
        currency=currency,
        items=items,
        metadata=dict(metadata),
        billing_cycle_anchor=now,
    )
    state.subscriptions[subscription.id] = subscription
    return subscription


def subscription_snapshot(state: StandinState, subscription: Subscription) -> dict[str, Any]:
    with state.lock:
        return subscription.to_stripe(state.prices)


def get_subscription(state: StandinState, subscription_id: str) -> Subscription:
    with state.lock:
        subscription = state.subscriptions.get(subscription_id)
        if subscription is None:
            raise no_such("subscription", subscription_id)
        return subscription
