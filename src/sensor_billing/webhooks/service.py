"""Processing one verified delivery exactly once.

`deliver_event` owns the delivery's transaction, the way a request or job wrapper does:
  - a type with a handler: one transaction records the event and runs the handler; any error
    rolls both back and propagates, so the endpoint answers 5xx and Stripe delivers again. It
    is a transaction on the driver (`db.driver.driver_unit_of_work`): SQLAlchemy's session and
    statement execution were most of a handled delivery's CPU. A copy recorded already (by
    another API process, say) is answered by a lookup shared with the deliveries waiting at
    that moment (`lookup.EventLookup`), without a transaction. With `groups`, deliveries that
    arrive together share one transaction (`groups.HandledDeliveries`, `deliver_together`);
    an event applied alone is `deliver_alone`;
  - a type without a handler: recording the event is its only effect, so an autocommit
    `INSERT ... ON CONFLICT DO NOTHING` is the whole transaction (one round trip, not three),
    shared with the other deliveries waiting at that moment (`recorder.EventRecorder`);
  - with a `notifier`, a handled delivery that wrote state also checks, in its transaction,
    whether the organization's entitlement changed (`entitlement_changes`), and adds the
    `billing:entitlement-changed` job after the commit;
  - a subscription event of the same second as the stored state that says something else
    (`billing.service.SameSecondConflict`: `created` has one-second resolution, so which is
    newer cannot be told): that transaction rolls back, the subscription is fetched from
    Stripe outside any transaction, and a new one records the event and applies what Stripe
    says now (`deliver_as_stripe_says_now`), the notifier's check included. A fetch failure
    raises before anything is written: the endpoint answers 5xx and Stripe delivers again.
    Other deliveries pay nothing for this: the check compares values the handler has read
    already.

`deliver_thin_event` does the same for a thin event, whose full event is fetched from Stripe
first, outside any transaction (a network call never holds a row lock). A fetch failure
raises before anything is written: the endpoint answers 5xx and Stripe delivers again.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.billing.entitlement_notices_repository import NoticeRow
from sensor_billing.billing.service import Effect, Result, SameSecondConflict
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.driver import driver_unit_of_work
from sensor_billing.metering import meter_errors
from sensor_billing.observability.metrics import record_meter_errors
from sensor_billing.webhooks import repository
from sensor_billing.webhooks.entitlement_changes import EntitlementNotifier
from sensor_billing.webhooks.envelope import StripeEventEnvelope
from sensor_billing.webhooks.handlers import HANDLERS, GroupHandler, Handler
from sensor_billing.webhooks.lookup import EventLookup
from sensor_billing.webhooks.recorder import EventRecorder
from sensor_billing.webhooks.thin_events import ThinEventNotification

if TYPE_CHECKING:
    from sensor_billing.webhooks.groups import HandledDeliveries

# (event id, context) -> the full event's JSON; raises `EventFetchError`.
EventFetcher = Callable[[str, str | None], Awaitable[dict[str, Any]]]
# subscription id -> the subscription's JSON as Stripe answers now; raises `EventFetchError`.
SubscriptionFetcher = Callable[[str], Awaitable[dict[str, Any]]]


class Outcome(enum.StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Processed:
    outcome: Outcome
    result: Result


UNHANDLED = Result(Effect.IGNORED, "event type has no handler")
ALREADY_PROCESSED = Result(Effect.UNCHANGED, "event already processed")


async def deliver_event(
    recorder: EventRecorder,
    lookup: EventLookup,
    engine: AsyncEngine,
    event: StripeEventEnvelope,
    fetch_subscription: SubscriptionFetcher,
    notifier: EntitlementNotifier | None = None,
    groups: HandledDeliveries | None = None,
) -> Processed:
    """With `groups`, a handled delivery waits to be applied with those that arrive with it
    (`webhooks.groups`); without, it is applied alone."""
    if event.type not in HANDLERS:
        recorded = await recorder.record(event.id, event.type)
        return Processed(Outcome.PROCESSED if recorded else Outcome.DUPLICATE, UNHANDLED)

    if await lookup.recorded(event.id):
        return Processed(Outcome.DUPLICATE, ALREADY_PROCESSED)
    if groups is not None:
        return await groups.deliver(event, fetch_subscription)
    return await deliver_alone(engine, event, fetch_subscription, notifier)


async def deliver_alone(
    engine: AsyncEngine,
    event: StripeEventEnvelope,
    fetch_subscription: SubscriptionFetcher,
    notifier: EntitlementNotifier | None,
) -> Processed:
    """A handled event recorded and applied in a transaction of its own."""
    handler = HANDLERS[event.type]
    try:
        return await _record_and_handle(engine, event, handler, notifier)
    except SameSecondConflict as conflict:  # rolled back, the connection back in the pool
        current_object = await fetch_subscription(conflict.subscription_id)
        return await deliver_as_stripe_says_now(engine, event, handler, current_object, notifier)


async def deliver_together(
    engine: AsyncEngine,
    events: Sequence[StripeEventEnvelope],
    handle: GroupHandler,
    notifier: EntitlementNotifier | None,
) -> list[Processed]:
    """Events of one type, touching distinct things, recorded and applied in one
    transaction (`webhooks.groups`); one answer per event, in order. Any error, a
    `SameSecondConflict` or a `GroupConflict` among them, rolls all of it back and raises."""
    notices: list[NoticeRow] = []
    async with driver_unit_of_work(engine) as connection:
        new = await repository.record_events_on(
            connection, sorted((event.id, event.type) for event in events)
        )
        fresh = [event for event in events if event.id in new]
        results = dict(
            zip(
                (e.id for e in fresh), await handle(connection, fresh) if fresh else [], strict=True
            )
        )
        wrote = [event for event in fresh if results[event.id].wrote]
        if notifier is not None and wrote:
            notices = await notifier.notice_all(connection, wrote)
    if notices and notifier is not None:  # committed: the product may hear of them
        await notifier.publish_all(notices)
    return [
        Processed(Outcome.PROCESSED, results[event.id])
        if event.id in results
        else Processed(Outcome.DUPLICATE, ALREADY_PROCESSED)
        for event in events
    ]


async def deliver_as_stripe_says_now(
    engine: AsyncEngine,
    event: StripeEventEnvelope,
    handler: Handler,
    current_object: dict[str, Any],
    notifier: EntitlementNotifier | None,
) -> Processed:
    """The event recorded and handled with `current_object`, its object as fetched from Stripe
    after the event, in place of the event's snapshot; the watermark stays at its second."""
    current = dataclasses.replace(event, object=current_object, object_is_current=True)
    return await _record_and_handle(engine, current, handler, notifier)


async def _record_and_handle(
    engine: AsyncEngine,
    event: StripeEventEnvelope,
    handler: Handler,
    notifier: EntitlementNotifier | None,
) -> Processed:
    notice = None
    async with driver_unit_of_work(engine) as connection:
        # A concurrent delivery of this event waits here until the other transaction ends.
        if not await repository.record_event_on(connection, event.id, event.type):
            return Processed(Outcome.DUPLICATE, ALREADY_PROCESSED)
        result = await handler(connection, event)
        if notifier is not None and result.wrote:
            notice = await notifier.notice(connection, event)
    if notice is not None and notifier is not None:  # committed: the product may hear of it
        await notifier.publish_all([notice])
    return Processed(Outcome.PROCESSED, result)


async def deliver_thin_event(
    recorder: EventRecorder,
    sessions: SessionFactory,
    notification: ThinEventNotification,
    fetch_event: EventFetcher,
) -> Processed:
    if notification.type not in meter_errors.METER_ERROR_EVENT_TYPES:
        recorded = await recorder.record(notification.id, notification.type)
        return Processed(Outcome.PROCESSED if recorded else Outcome.DUPLICATE, UNHANDLED)

    async with sessions() as session:
        if await repository.event_recorded(session, notification.id):
            return Processed(Outcome.DUPLICATE, ALREADY_PROCESSED)
    event = meter_errors.read_meter_error_event(
        await fetch_event(notification.id, notification.context),
        event_id=notification.id,
        event_type=notification.type,
    )
    async with unit_of_work(sessions) as session:
        # A concurrent delivery that fetched too waits here and then sees the row.
        if not await repository.record_event(session, notification.id, notification.type):
            return Processed(Outcome.DUPLICATE, ALREADY_PROCESSED)
        result = await meter_errors.apply_meter_error_event(session, event)
    record_meter_errors(meter_errors.error_counts(event))  # committed: count once
    return Processed(Outcome.PROCESSED, result)
