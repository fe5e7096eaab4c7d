"""Subscriptions: started by a completed Checkout Session, read, listed, updated and canceled.

Stripe rules followed (docs: api/subscriptions/object, .../list, .../update, .../cancel):
- one item per price, each with its own `current_period_start/end` (basil and later), the
  period counted from the billing cycle anchor (periods.py);
- the list shows subscriptions that are not canceled unless `status` asks (`all`, or one of
  the statuses), newest first, filtered by `customer` and `created` (the other filters Stripe
  takes are refused as not modelled, not ignored);
- an update sets `cancel_at_period_end`, merges `metadata` and sets
  `cancellation_details[comment|feedback]` (feedback one of Stripe's eight reasons; also taken
  by the cancel); a canceled subscription "can only update its cancellation_details and
  metadata";
- canceling ends the subscription now: `status` `canceled`, `canceled_at` and `ended_at` set,
  `customer.subscription.deleted` sent; canceling it again answers "No such subscription"
  (resource_missing), as Stripe does for a subscription that already ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stripe.params import (
    SubscriptionCancelParams,
    SubscriptionCancelParamsCancellationDetails,
    SubscriptionListParams,
    SubscriptionUpdateParams,
    SubscriptionUpdateParamsCancellationDetails,
)

from .billing_records import CheckoutLineItem, Subscription, SubscriptionItem
from .errors import InvalidRequestError, invalid_param, no_such
from .forms import (
    Form,
    merge_metadata,
    optional_bool,
    optional_map,
    optional_str,
    refuse_unmodelled,
    sub_form,
)
from .pagination import PAGING_PARAMS, created_filter
from .periods import period
from .records import new_id
from .state import StandinState
from .stripe_params import stripe_takes
from .webhook_events import emit


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


_STATUSES = ("active", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired",
             "trialing", "paused", "all", "ended")  # fmt: skip
_UPDATE_PARAMS = frozenset({"cancel_at_period_end", "metadata", "cancellation_details", "expand"})
_CANCELED_MAY_UPDATE = frozenset({"metadata", "cancellation_details", "expand"})
_CANCEL_PARAMS = frozenset({"cancellation_details", "expand"})
# api/subscriptions/update, cancellation_details.feedback.
CANCELLATION_FEEDBACK = ("customer_service", "low_quality", "missing_features", "other",
                         "switched_service", "too_complex", "too_expensive", "unused")  # fmt: skip
_LIST_PARAMS = PAGING_PARAMS | {"customer", "status", "created"}
_LIST_STRIPE_TAKES = stripe_takes(SubscriptionListParams)


def list_subscriptions(state: StandinState, query: Form) -> list[Subscription]:
    refuse_unmodelled(query, _LIST_PARAMS, _LIST_STRIPE_TAKES)
    made_in_range = created_filter(query)
    customer = optional_str(query, "customer")
    status = optional_str(query, "status")
    if status is not None and status not in _STATUSES:
        raise invalid_param("status", f"Invalid status: must be one of {', '.join(_STATUSES)}")
    with state.lock:
        found = [
            subscription
            for subscription in state.subscriptions.values()
            if (customer is None or subscription.customer == customer)
            and _status_matches(subscription, status)
            and made_in_range(subscription.created)
        ]
    return found[::-1]


def _status_matches(subscription: Subscription, status: str | None) -> bool:
    if status is None:
        return subscription.status != "canceled"
    if status == "all":
        return True
    if status == "ended":
        return subscription.status == "canceled"
    return subscription.status == status


def update_subscription(state: StandinState, subscription_id: str, form: Form) -> Subscription:
    refuse_unmodelled(form, _UPDATE_PARAMS, stripe_takes(SubscriptionUpdateParams))
    # Everything is read before anything changes: a bad value leaves the subscription as it was.
    cancel_at_period_end = optional_bool(form, "cancel_at_period_end")
    metadata = optional_map(form, "metadata")
    details = _cancellation_details(form, SubscriptionUpdateParamsCancellationDetails)
    with state.lock:
        subscription = get_subscription(state, subscription_id)
        if subscription.status == "canceled" and not set(form) <= _CANCELED_MAY_UPDATE:
            raise InvalidRequestError(
                "A canceled subscription can only update its cancellation_details and metadata."
            )
        before = subscription_snapshot(state, subscription)
        if cancel_at_period_end is not None:
            subscription.cancel_at_period_end = cancel_at_period_end
        merge_metadata(subscription.metadata, metadata)
        _set_cancellation_details(subscription, details)
        after = subscription_snapshot(state, subscription)
        if after != before:
            emit(state, "customer.subscription.updated", after, before)
        return subscription


def cancel_subscription(state: StandinState, subscription_id: str, form: Form) -> Subscription:
    refuse_unmodelled(form, _CANCEL_PARAMS, stripe_takes(SubscriptionCancelParams))
    details = _cancellation_details(form, SubscriptionCancelParamsCancellationDetails)
    with state.lock:
        subscription = get_subscription(state, subscription_id)
        if subscription.status == "canceled":
            raise no_such("subscription", subscription_id)
        _set_cancellation_details(subscription, details)
        end_now(state, subscription, reason="cancellation_requested")
        return subscription


def _cancellation_details(form: Form, params_type: type) -> dict[str, str | None]:
    """`cancellation_details[comment|feedback]`: what is given, `""` unsetting it."""
    given = sub_form(form, "cancellation_details")
    if given is None:
        return {}
    where = "cancellation_details"
    refuse_unmodelled(given, ("comment", "feedback"), stripe_takes(params_type), within=where)
    details: dict[str, str | None] = {}
    for name in ("comment", "feedback"):
        value = optional_str(given, name, param=f"{where}[{name}]")
        if value is not None:
            details[name] = value or None
    feedback = details.get("feedback")
    if feedback is not None and feedback not in CANCELLATION_FEEDBACK:
        raise invalid_param(
            f"{where}[feedback]",
            f"Invalid {where}[feedback]: must be one of {', '.join(CANCELLATION_FEEDBACK)}",
        )
    return details


def _set_cancellation_details(subscription: Subscription, details: dict[str, str | None]) -> None:
    if "comment" in details:
        subscription.cancellation_comment = details["comment"]
    if "feedback" in details:
        subscription.cancellation_feedback = details["feedback"]


def end_now(state: StandinState, subscription: Subscription, *, reason: str) -> None:
    """Cancel at the stand-in's now and send `customer.subscription.deleted`. Call with
    `state.lock` held."""
    now = int(state.clock.now())
    subscription.status = "canceled"
    subscription.canceled_at = now
    subscription.ended_at = now
    subscription.cancellation_reason = reason
    emit(state, "customer.subscription.deleted", subscription_snapshot(state, subscription))
