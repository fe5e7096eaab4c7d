"""One handler per event type that changes billing state. Handlers stay fast and DB-only; each
runs in the delivery's transaction on the driver (`db.driver.driver_unit_of_work`).

Each type has a group form (`GROUP_HANDLERS`) that applies many events of it in one
transaction, each step one statement (`billing.grouped`, `webhooks.groups`); its handler is
that form applied to one event. `group_keys` names what an event touches, so that a group's
events touch distinct things."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from sensor_billing.billing import grouped
from sensor_billing.billing.duplicate_subscriptions import (
    notice_duplicate_subscriptions,
)
from sensor_billing.billing.service import Effect, EventContext, Result
from sensor_billing.billing.stripe_objects import (
    InvoiceSnapshot,
    SubscriptionSnapshot,
    checkout_organization_id,
    object_id,
    read_invoice,
    read_subscription,
)
from sensor_billing.db.driver import Driver
from sensor_billing.webhooks.envelope import StripeEventEnvelope

Handler = Callable[[Driver, StripeEventEnvelope], Awaitable[Result]]


def _context(event: StripeEventEnvelope) -> EventContext:
    return EventContext(
        id=event.id,
        type=event.type,
        created=event.created,
        object_is_current=event.object_is_current,
    )


NO_ORGANIZATION = Result(
    Effect.IGNORED, "session names no organization (metadata/client_reference_id)"
)
NO_CUSTOMER = Result(Effect.IGNORED, "session has no customer")
UNREADABLE_SUBSCRIPTION = Result(
    Effect.IGNORED, "subscription without a readable id, customer or status"
)
UNREADABLE_INVOICE = Result(Effect.IGNORED, "invoice without a readable id or customer")
CUSTOMER_WITHOUT_ID = Result(Effect.IGNORED, "customer without id")


def _checkout(event: StripeEventEnvelope) -> tuple[EventContext, uuid.UUID, str] | Result:
    organization_id = checkout_organization_id(event.object)
    if organization_id is None:
        return NO_ORGANIZATION
    customer_id = object_id(event.object.get("customer"))
    if customer_id is None:
        return NO_CUSTOMER
    return _context(event), organization_id, customer_id


def _subscription(event: StripeEventEnvelope) -> tuple[EventContext, SubscriptionSnapshot] | Result:
    snapshot = read_subscription(event.object)
    return UNREADABLE_SUBSCRIPTION if snapshot is None else (_context(event), snapshot)


def _invoice(
    payment_status: str,
) -> Callable[[StripeEventEnvelope], tuple[EventContext, InvoiceSnapshot, str] | Result]:
    def read(event: StripeEventEnvelope) -> tuple[EventContext, InvoiceSnapshot, str] | Result:
        snapshot = read_invoice(event.object)
        if snapshot is None:
            return UNREADABLE_INVOICE
        return _context(event), snapshot, payment_status

    return read


def _deleted_customer(event: StripeEventEnvelope) -> tuple[EventContext, str] | Result:
    customer_id = object_id(event.object.get("id"))
    return CUSTOMER_WITHOUT_ID if customer_id is None else (_context(event), customer_id)


# The events of one type applied together: one result per event, in order.
GroupHandler = Callable[[Driver, Sequence[StripeEventEnvelope]], Awaitable[list[Result]]]
Item = TypeVar("Item")


def _group_form(
    read: Callable[[StripeEventEnvelope], Item | Result],
    apply: Callable[[Driver, list[Item]], Awaitable[list[Result]]],
) -> GroupHandler:
    """The events it cannot read answered with the reason, the rest applied together."""

    async def handle(connection: Driver, events: Sequence[StripeEventEnvelope]) -> list[Result]:
        reads = [read(event) for event in events]
        items = [item for item in reads if not isinstance(item, Result)]
        applied = iter(await apply(connection, items) if items else [])
        return [item if isinstance(item, Result) else next(applied) for item in reads]

    return handle


def _alone(group: GroupHandler) -> Handler:
    """The handler of one event: its type's group form, with a group of one (the same
    statements as one event needs)."""

    async def handle(connection: Driver, event: StripeEventEnvelope) -> Result:
        return (await group(connection, [event]))[0]

    return handle


async def _created_subscriptions(
    connection: Driver, items: list[tuple[EventContext, SubscriptionSnapshot]]
) -> list[Result]:
    results = await grouped.apply_subscriptions(connection, items)
    # A second live subscription bills the customer's usage twice: flagged, not undone.
    created = [(s.customer_id, s.id, event.id) for event, s in items]
    await notice_duplicate_subscriptions(connection, created)
    return results


checkouts_completed = _group_form(_checkout, grouped.link_customers)
subscriptions_created = _group_form(_subscription, _created_subscriptions)
subscriptions_changed = _group_form(_subscription, grouped.apply_subscriptions)
invoices_paid = _group_form(_invoice("paid"), grouped.apply_invoice_payments)
invoices_payment_failed = _group_form(_invoice("payment_failed"), grouped.apply_invoice_payments)
customers_deleted = _group_form(_deleted_customer, grouped.delete_customers)

checkout_session_completed = _alone(checkouts_completed)
subscription_created = _alone(subscriptions_created)
subscription_changed = _alone(subscriptions_changed)
invoice_paid = _alone(invoices_paid)
invoice_payment_failed = _alone(invoices_payment_failed)
customer_deleted = _alone(customers_deleted)

HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": checkout_session_completed,
    "customer.subscription.created": subscription_created,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_changed,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
    "customer.deleted": customer_deleted,
}


# Keyed by the handler, not the type: a type whose handler was replaced (a test's, say) has no
# group form, and its events are applied one at a time.
GROUP_HANDLERS: dict[Handler, GroupHandler] = {
    checkout_session_completed: checkouts_completed,
    subscription_created: subscriptions_created,
    subscription_changed: subscriptions_changed,
    invoice_paid: invoices_paid,
    invoice_payment_failed: invoices_payment_failed,
    customer_deleted: customers_deleted,
}


def group_keys(event: StripeEventEnvelope) -> frozenset[str]:
    """What the event may touch: its object, its customer, its organization. Two events of
    one group never share a key (`webhooks.groups`)."""
    keys = {f"event:{event.id}"}
    organization_id = (
        checkout_organization_id(event.object) if event.type.startswith("checkout.") else None
    )
    if organization_id is not None:
        keys.add(f"organization:{organization_id}")
    for field in ("id", "customer"):
        found = object_id(event.object.get(field))
        if found is not None:
            keys.add(f"stripe:{found}")
    return frozenset(keys)
