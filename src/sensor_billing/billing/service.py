"""Applying what a Stripe event says to billing state.

Every function sets state to what the event's object says; none increments, so the rare second
Event object Stripe creates for one change is harmless. Each keeps a watermark (the `created`
time of the event that last set the object): Stripe does not order events, and an older one
never overwrites newer state.

`created` has one-second resolution, so the watermark cannot order two events of one second:
- a subscription event of the stored state's second that says something else raises
  `SameSecondConflict` (which rolls the delivery back): the delivery fetches the subscription
  from Stripe and applies what Stripe says now, with the event's id and second
  (`webhooks.service`). A copy that agrees with the stored state applies as usual;
- an invoice needs no fetch: its only states here are `payment_failed` and `paid`, and `paid`
  is terminal (`TERMINAL_PAYMENT_STATUSES`), so either order ends paid; the first failure's
  time is the earliest of them, in any order;
- a terminal subscription status (`TERMINAL_SUBSCRIPTION_STATUSES`) is never undone, whatever
  the second.
Nothing here commits.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table

from sensor_billing.billing import repository
from sensor_billing.billing.repository import StoredRow
from sensor_billing.billing.stripe_objects import InvoiceSnapshot, SubscriptionSnapshot
from sensor_billing.db.driver import Driver, RollBack


@dataclass(frozen=True, slots=True)
class EventContext:
    id: str
    type: str
    created: datetime
    # The object is what Stripe answered when asked after the event, not the event's snapshot:
    # it is applied even when the stored state is of the event's second.
    object_is_current: bool = False


class SameSecondConflict(RollBack):
    """The event and the stored state of its subscription share a second and disagree.

    Which of the two is newer cannot be told, so the delivery is rolled back and the
    subscription fetched from Stripe (`webhooks.service.deliver_event`).
    """

    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"subscription {subscription_id}: an event of the stored state's second")
        self.subscription_id = subscription_id


class Effect(enum.StrEnum):
    APPLIED = "applied"  # state changed
    UNCHANGED = "unchanged"  # the event says what the state already says
    STALE = "stale"  # newer state is stored; the event is older
    IGNORED = "ignored"  # nothing to apply it to (reason says why)


@dataclass(frozen=True, slots=True)
class Result:
    effect: Effect
    reason: str = ""


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _diff(row: Any, values: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {"from": _jsonable(getattr(row, name, None)), "to": _jsonable(value)}
        for name, value in values.items()
        if row is None or getattr(row, name) != value
    }


# A `stripe_subscriptions` or `stripe_invoices` row as read (repository.get_*).
StateRow = StoredRow


def _stale(row: StateRow | None, event: EventContext) -> Result | None:
    if row is not None and row.last_event_created > event.created:
        return Result(Effect.STALE, f"state from {row.last_event_created.isoformat()} is newer")
    return None


def _same_second_disagreement(
    row: StateRow | None, event: EventContext, values: dict[str, Any]
) -> bool:
    return (
        row is not None
        and not event.object_is_current
        and row.last_event_created == event.created
        and bool(_diff(row, values))
    )


CURRENT_OBJECT_REASON = (
    "its event shares a second with the stored state: applied what Stripe says now"
)


async def _set_state(
    connection: Driver,
    event: EventContext,
    row: StateRow | None,
    table: Table,
    values: dict[str, Any],
    *,
    stripe_id: str,
    customer_id: str,
    summary: str,
) -> Result:
    """Write `values` onto the object's row (creating it), move its watermark, log a change."""
    change = _diff(row, values)
    # The watermark moves even when nothing else does, so an older event cannot slip in later.
    watermark = {"id": stripe_id, "last_event_id": event.id, "last_event_created": event.created}
    logged = (
        repository.LoggedChange(customer_id, event.id, event.type, change, summary)
        if change
        else None
    )
    await repository.save_state(connection, table, {**values, **watermark}, logged)
    return Result(Effect.APPLIED if change else Effect.UNCHANGED)


# Statuses Stripe never leaves (docs: api/subscriptions/object, `status`: incomplete_expired
# "is a terminal status"; the API refuses "A canceled subscription can only update its
# cancellation_details"). An event that says otherwise about an ended subscription is older,
# from the same second as the one that ended it (`created` has one-second resolution).
TERMINAL_SUBSCRIPTION_STATUSES = frozenset({"canceled", "incomplete_expired"})


async def apply_subscription(
    connection: Driver, event: EventContext, snapshot: SubscriptionSnapshot
) -> Result:
    # Any event's copy of a price is right (prices never change), stale or not.
    await repository.record_prices(connection, snapshot.metered_prices)
    await repository.lock_stripe_object(connection, snapshot.id)
    row = await repository.get_subscription(connection, snapshot.id)
    if stale := _stale(row, event):
        return stale
    if (
        row is not None
        and row.status in TERMINAL_SUBSCRIPTION_STATUSES
        and snapshot.status not in TERMINAL_SUBSCRIPTION_STATUSES
    ):
        return Result(Effect.STALE, f"subscription is {row.status}, which Stripe never undoes")
    values: dict[str, Any] = {
        "stripe_customer_id": snapshot.customer_id,
        "status": snapshot.status,
        "current_period_start": snapshot.current_period_start,
        "current_period_end": snapshot.current_period_end,
        "metered_price_ids": snapshot.metered_price_ids,
        "cancel_at_period_end": snapshot.cancel_at_period_end,
        "ended_at": snapshot.ended_at,
    }
    if _same_second_disagreement(row, event, values):
        raise SameSecondConflict(snapshot.id)
    result = await _set_state(
        connection,
        event,
        row,
        repository.SUBSCRIPTIONS,
        values,
        stripe_id=snapshot.id,
        customer_id=snapshot.customer_id,
        summary=f"subscription {snapshot.id} {snapshot.status}",
    )
    return Result(result.effect, CURRENT_OBJECT_REASON) if event.object_is_current else result


# An invoice that has been paid stays paid: a payment failure reported for it (an earlier
# attempt, delivered late) must not make a paid customer look delinquent, nor carry the failed
# attempt's amounts (`amount_paid` 0) onto the paid invoice.
TERMINAL_PAYMENT_STATUSES = frozenset({"paid"})


def _first_failed_at(
    row: StateRow | None, event: EventContext, payment_status: str
) -> datetime | None:
    known = row.first_failed_at if row is not None else None
    if payment_status != "payment_failed":
        return known
    return event.created if known is None else min(known, event.created)


async def apply_invoice_payment(
    connection: Driver, event: EventContext, snapshot: InvoiceSnapshot, payment_status: str
) -> Result:
    await repository.lock_stripe_object(connection, snapshot.id)
    row = await repository.get_invoice(connection, snapshot.id)
    first_failed_at = _first_failed_at(row, event, payment_status)
    if row is not None and first_failed_at != row.first_failed_at:
        # The grace period counts from the first failure, however late its event arrives, so
        # this moves even when the rest of the event is stale.
        row = await repository.set_first_failed_at(connection, snapshot.id, first_failed_at)
    if stale := _stale(row, event):
        return stale
    if (
        row is not None
        and row.payment_status in TERMINAL_PAYMENT_STATUSES
        and payment_status not in TERMINAL_PAYMENT_STATUSES
    ):
        return Result(Effect.STALE, f"invoice is {row.payment_status}; this attempt is older")
    values: dict[str, Any] = {
        "stripe_customer_id": snapshot.customer_id,
        "stripe_subscription_id": snapshot.subscription_id,
        "payment_status": payment_status,
        "amount_due": snapshot.amount_due,
        "amount_paid": snapshot.amount_paid,
        "currency": snapshot.currency,
        "first_failed_at": first_failed_at,
    }
    return await _set_state(
        connection,
        event,
        row,
        repository.INVOICES,
        values,
        stripe_id=snapshot.id,
        customer_id=snapshot.customer_id,
        summary=f"invoice {snapshot.id} {payment_status}",
    )


async def link_customer(
    connection: Driver, event: EventContext, organization_id: uuid.UUID, customer_id: str
) -> Result:
    """Link the organization a Checkout Session named to the session's Stripe customer."""
    await repository.lock_stripe_object(connection, customer_id)
    organization = await repository.organization_for_update(connection, organization_id)
    if organization is None:
        return Result(Effect.IGNORED, f"no organization {organization_id}")
    watermark = organization.stripe_customer_event_created
    if watermark is not None and watermark > event.created:
        return Result(Effect.STALE, f"customer link from {watermark.isoformat()} is newer")
    holder = await repository.customer_holder(connection, customer_id)
    if holder is not None and holder != organization_id:
        # One customer pays for one organization; moving it silently would bill the wrong one.
        return Result(Effect.IGNORED, f"customer {customer_id} belongs to organization {holder}")
    if organization.stripe_customer_id == customer_id and organization.stripe_customer_deleted_at:
        return Result(Effect.IGNORED, f"customer {customer_id} was deleted")
    # A `customer.deleted` may arrive before this checkout (Stripe does not order events):
    # linking a deleted customer as live would meter usage for it.
    deleted_at = await repository.customer_deleted_at(connection, customer_id)
    change = _diff(
        organization,
        {"stripe_customer_id": customer_id, "stripe_customer_deleted_at": deleted_at},
    )
    await repository.set_organization_customer(
        connection,
        organization_id,
        customer_id=customer_id,
        deleted_at=deleted_at,
        event_created=event.created,
    )
    if not change:
        return Result(Effect.UNCHANGED)
    await repository.record_change(
        connection,
        organization_id=organization_id,
        stripe_object_id=customer_id,
        event_id=event.id,
        event_type=event.type,
        change=change,
        summary=f"customer {customer_id} linked",
    )
    return Result(Effect.APPLIED)


async def delete_customer(connection: Driver, event: EventContext, customer_id: str) -> Result:
    """Mark the organization's customer deleted; usage is no longer reported for it."""
    await repository.lock_stripe_object(connection, customer_id)
    organization = await repository.organization_by_customer_for_update(connection, customer_id)
    deleted = {"stripe_customer_deleted_at": {"from": None, "to": event.created.isoformat()}}
    if organization is None:
        # Kept in the change log, where a checkout that links this customer later finds it.
        if await repository.customer_deleted_at(connection, customer_id) is not None:
            return Result(Effect.UNCHANGED, f"no organization has customer {customer_id}")
        await repository.record_change(
            connection,
            organization_id=None,
            stripe_object_id=customer_id,
            event_id=event.id,
            event_type=event.type,
            change=deleted,
            summary=f"customer {customer_id} deleted (no organization holds it yet)",
        )
        return Result(Effect.APPLIED, f"no organization has customer {customer_id} yet")
    # The organization holds this customer, and a deletion is final: it applies whenever it
    # arrives. It leaves the link watermark alone: a link to another customer that Stripe made
    # before this deletion but that arrives after it is still newer than the link it replaces.
    if organization.stripe_customer_deleted_at is not None:
        return Result(Effect.UNCHANGED)
    await repository.set_customer_deleted_at(connection, organization.id, event.created)
    await repository.record_change(
        connection,
        organization_id=organization.id,
        stripe_object_id=customer_id,
        event_id=event.id,
        event_type=event.type,
        change=deleted,
        summary=f"customer {customer_id} deleted",
    )
    return Result(Effect.APPLIED)
