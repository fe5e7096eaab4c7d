"""One handler per event type that changes billing state. Handlers stay fast and DB-only; each
runs in the delivery's transaction on the driver (`db.driver.driver_unit_of_work`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sensor_billing.billing import service
from sensor_billing.billing.duplicate_subscriptions import notice_duplicate_subscription
from sensor_billing.billing.service import Effect, EventContext, Result
from sensor_billing.billing.stripe_objects import (
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


async def checkout_session_completed(connection: Driver, event: StripeEventEnvelope) -> Result:
    organization_id = checkout_organization_id(event.object)
    if organization_id is None:
        return Result(
            Effect.IGNORED, "session names no organization (metadata/client_reference_id)"
        )
    customer_id = object_id(event.object.get("customer"))
    if customer_id is None:
        return Result(Effect.IGNORED, "session has no customer")
    return await service.link_customer(connection, _context(event), organization_id, customer_id)


async def subscription_changed(connection: Driver, event: StripeEventEnvelope) -> Result:
    snapshot = read_subscription(event.object)
    if snapshot is None:
        return Result(Effect.IGNORED, "subscription without a readable id, customer or status")
    return await service.apply_subscription(connection, _context(event), snapshot)


async def subscription_created(connection: Driver, event: StripeEventEnvelope) -> Result:
    result = await subscription_changed(connection, event)
    snapshot = read_subscription(event.object)
    if snapshot is not None:
        # A second live subscription bills the customer's usage twice: flagged, not undone.
        await notice_duplicate_subscription(
            connection, snapshot.customer_id, snapshot.id, event_id=event.id
        )
    return result


def invoice_payment(payment_status: str) -> Handler:
    async def handle(connection: Driver, event: StripeEventEnvelope) -> Result:
        snapshot = read_invoice(event.object)
        if snapshot is None:
            return Result(Effect.IGNORED, "invoice without a readable id or customer")
        return await service.apply_invoice_payment(
            connection, _context(event), snapshot, payment_status
        )

    return handle


async def customer_deleted(connection: Driver, event: StripeEventEnvelope) -> Result:
    customer_id = object_id(event.object.get("id"))
    if customer_id is None:
        return Result(Effect.IGNORED, "customer without id")
    return await service.delete_customer(connection, _context(event), customer_id)


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": checkout_session_completed,
    "customer.subscription.created": subscription_created,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_changed,
    "invoice.paid": invoice_payment("paid"),
    "invoice.payment_failed": invoice_payment("payment_failed"),
    "customer.deleted": customer_deleted,
}
