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

import dataclasses
import enum
import uuid
from collections.abc import Sequence
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


class GroupConflict(RollBack):
    """Two events of one group meet after all (`billing.grouped`): the group is rolled back
    and its events applied one at a time (`webhooks.groups`)."""


class Effect(enum.StrEnum):
    APPLIED = "applied"  # state changed
    UNCHANGED = "unchanged"  # the event says what the state already says
    STALE = "stale"  # newer state is stored; the event is older
    IGNORED = "ignored"  # nothing to apply it to (reason says why)


@dataclass(frozen=True, slots=True)
class Result:
    effect: Effect
    reason: str = ""
    # A stale invoice event whose earlier failure moved the grace period's start.
    moved_grace_start: bool = False

    @property
    def wrote(self) -> bool:
        """Whether the event wrote billing state (a watermark alone moves a past-due grace
        period's start, docs/billing.md): the organization's entitlement may have changed."""
        return self.effect in (Effect.APPLIED, Effect.UNCHANGED) or self.moved_grace_start


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


@dataclass(frozen=True, slots=True)
class StateWrite:
    """What applying an event writes onto its object's row (`repository.save_states`), and the
    result it then has."""

    table: Table
    values: dict[str, Any]
    logged: repository.LoggedChange | None
    result: Result


# What an event does to its object: nothing (the result says why), or a write.
Decision = Result | StateWrite


def _state_write(
    event: EventContext,
    row: StateRow | None,
    table: Table,
    values: dict[str, Any],
    *,
    stripe_id: str,
    customer_id: str,
    summary: str,
) -> StateWrite:
    """`values` onto the object's row (creating it), its watermark moved, a change logged."""
    change = _diff(row, values)
    # The watermark moves even when nothing else does, so an older event cannot slip in later.
    watermark = {"id": stripe_id, "last_event_id": event.id, "last_event_created": event.created}
    logged = (
        repository.LoggedChange(customer_id, event.id, event.type, change, summary)
        if change
        else None
    )
    return StateWrite(
        table,
        {**values, **watermark},
        logged,
        Result(Effect.APPLIED if change else Effect.UNCHANGED),
    )


async def carry_out_all(connection: Driver, decisions: Sequence[Decision]) -> list[Result]:
    """The decisions' writes, one round trip per statement shape; their results."""
    writes = [decision for decision in decisions if isinstance(decision, StateWrite)]
    await repository.save_states(
        connection, [(write.table, write.values, write.logged) for write in writes]
    )
    return [decision if isinstance(decision, Result) else decision.result for decision in decisions]


# Statuses Stripe never leaves (docs: api/subscriptions/object, `status`: incomplete_expired
# "is a terminal status"; the API refuses "A canceled subscription can only update its
# cancellation_details"). An event that says otherwise about an ended subscription is older,
# from the same second as the one that ended it (`created` has one-second resolution).
TERMINAL_SUBSCRIPTION_STATUSES = frozenset({"canceled", "incomplete_expired"})


def decide_subscription(
    row: StateRow | None, event: EventContext, snapshot: SubscriptionSnapshot
) -> Decision:
    """What the event does to its subscription, stored as `row` (read under its lock)."""
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
    write = _state_write(
        event,
        row,
        repository.SUBSCRIPTIONS,
        values,
        stripe_id=snapshot.id,
        customer_id=snapshot.customer_id,
        summary=f"subscription {snapshot.id} {snapshot.status}",
    )
    if event.object_is_current:
        return dataclasses.replace(write, result=Result(write.result.effect, CURRENT_OBJECT_REASON))
    return write


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


@dataclass(frozen=True, slots=True)
class InvoiceDecision:
    # The invoice's first failure moves on its own (`repository.set_first_failed_at`), even
    # when the rest of the event is stale; None when it stays.
    moved_first_failed_at: tuple[datetime | None] | None
    decision: Decision

    def marked(self, result: Result) -> Result:
        """The result, marked when the first failure moved though the event was stale."""
        if self.moved_first_failed_at is None or result.wrote:
            return result
        return dataclasses.replace(result, moved_grace_start=True)


def decide_invoice_payment(
    row: StateRow | None, event: EventContext, snapshot: InvoiceSnapshot, payment_status: str
) -> InvoiceDecision:
    """What the event does to its invoice, stored as `row` (read under its lock)."""
    first_failed_at = _first_failed_at(row, event, payment_status)
    moved = None
    if row is not None and first_failed_at != row.first_failed_at:
        # The grace period counts from the first failure, however late its event arrives, so
        # this moves even when the rest of the event is stale.
        moved = (first_failed_at,)
        row = row.replaced(first_failed_at=first_failed_at)
    if stale := _stale(row, event):
        return InvoiceDecision(moved, stale)
    if (
        row is not None
        and row.payment_status in TERMINAL_PAYMENT_STATUSES
        and payment_status not in TERMINAL_PAYMENT_STATUSES
    ):
        stale = Result(Effect.STALE, f"invoice is {row.payment_status}; this attempt is older")
        return InvoiceDecision(moved, stale)
    values: dict[str, Any] = {
        "stripe_customer_id": snapshot.customer_id,
        "stripe_subscription_id": snapshot.subscription_id,
        "payment_status": payment_status,
        "amount_due": snapshot.amount_due,
        "amount_paid": snapshot.amount_paid,
        "currency": snapshot.currency,
        "first_failed_at": first_failed_at,
    }
    write = _state_write(
        event,
        row,
        repository.INVOICES,
        values,
        stripe_id=snapshot.id,
        customer_id=snapshot.customer_id,
        summary=f"invoice {snapshot.id} {payment_status}",
    )
    return InvoiceDecision(moved, write)


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """A `billing_state_changes` row (`repository.record_changes`)."""

    organization_id: uuid.UUID | None
    stripe_object_id: str
    event_id: str
    event_type: str
    change: dict[str, Any]
    summary: str


@dataclass(frozen=True, slots=True)
class CustomerDecision:
    """What a checkout or a `customer.deleted` does to its organization's customer."""

    result: Result
    # (organization, customer, deleted_at, event_created) for `set_organization_customers`.
    link: tuple[uuid.UUID, str, datetime | None, datetime] | None = None
    # (organization, deleted_at) for `set_customers_deleted_at`.
    deletion: tuple[uuid.UUID, datetime] | None = None
    logged: ChangeRow | None = None


def decide_link(
    event: EventContext,
    organization_id: uuid.UUID,
    customer_id: str,
    organization: StoredRow | None,
    holder: uuid.UUID | None,
    deleted_at: datetime | None,
) -> CustomerDecision:
    """`organization` as read under its lock; `holder` the organization that holds the
    customer; `deleted_at` when a `customer.deleted` said Stripe deleted it (if one did)."""
    if organization is None:
        return CustomerDecision(Result(Effect.IGNORED, f"no organization {organization_id}"))
    watermark = organization.stripe_customer_event_created
    if watermark is not None and watermark > event.created:
        stale = Result(Effect.STALE, f"customer link from {watermark.isoformat()} is newer")
        return CustomerDecision(stale)
    if holder is not None and holder != organization_id:
        # One customer pays for one organization; moving it silently would bill the wrong one.
        held = f"customer {customer_id} belongs to organization {holder}"
        return CustomerDecision(Result(Effect.IGNORED, held))
    if organization.stripe_customer_id == customer_id and organization.stripe_customer_deleted_at:
        return CustomerDecision(Result(Effect.IGNORED, f"customer {customer_id} was deleted"))
    # A `customer.deleted` may arrive before this checkout (Stripe does not order events):
    # linking a deleted customer as live would meter usage for it.
    change = _diff(
        organization,
        {"stripe_customer_id": customer_id, "stripe_customer_deleted_at": deleted_at},
    )
    link = (organization_id, customer_id, deleted_at, event.created)
    if not change:
        return CustomerDecision(Result(Effect.UNCHANGED), link=link)
    logged = ChangeRow(
        organization_id, customer_id, event.id, event.type, change, f"customer {customer_id} linked"
    )
    return CustomerDecision(Result(Effect.APPLIED), link=link, logged=logged)


def decide_deletion(
    event: EventContext,
    customer_id: str,
    organization: StoredRow | None,
    deleted_at: datetime | None,
) -> CustomerDecision:
    """`organization` the one holding the customer, read under its lock; `deleted_at` when a
    `customer.deleted` said so before (read when no organization holds it)."""
    deleted = {"stripe_customer_deleted_at": {"from": None, "to": event.created.isoformat()}}
    if organization is None:
        # Kept in the change log, where a checkout that links this customer later finds it.
        if deleted_at is not None:
            return CustomerDecision(
                Result(Effect.UNCHANGED, f"no organization has customer {customer_id}")
            )
        logged = ChangeRow(
            None,
            customer_id,
            event.id,
            event.type,
            deleted,
            f"customer {customer_id} deleted (no organization holds it yet)",
        )
        result = Result(Effect.APPLIED, f"no organization has customer {customer_id} yet")
        return CustomerDecision(result, logged=logged)
    # The organization holds this customer, and a deletion is final: it applies whenever it
    # arrives. It leaves the link watermark alone: a link to another customer that Stripe made
    # before this deletion but that arrives after it is still newer than the link it replaces.
    if organization.stripe_customer_deleted_at is not None:
        return CustomerDecision(Result(Effect.UNCHANGED))
    logged = ChangeRow(
        organization.id,
        customer_id,
        event.id,
        event.type,
        deleted,
        f"customer {customer_id} deleted",
    )
    return CustomerDecision(
        Result(Effect.APPLIED), deletion=(organization.id, event.created), logged=logged
    )


async def carry_out_customers(
    connection: Driver, decisions: Sequence[CustomerDecision]
) -> list[Result]:
    """The decisions' writes, one round trip per kind of statement."""
    await repository.set_organization_customers(
        connection, [decision.link for decision in decisions if decision.link is not None]
    )
    await repository.set_customers_deleted_at(
        connection, [decision.deletion for decision in decisions if decision.deletion]
    )
    await repository.record_changes(
        connection, [dataclasses.asdict(d.logged) for d in decisions if d.logged is not None]
    )
    return [decision.result for decision in decisions]
