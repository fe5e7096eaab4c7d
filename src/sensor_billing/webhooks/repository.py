"""SQL for the webhook idempotency store (`stripe_events`). Nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from sensor_billing.db.driver import Driver, pooled_driver
from sensor_billing.db.schema import StripeEvent

_events = StripeEvent.__table__
assert isinstance(_events, Table)

# Built once: a Core statement with bind parameters hits SQLAlchemy's compiled cache, which
# matters on the webhook hot path (an ORM insert built per call costs several times more).
RECORD_EVENT = (
    insert(_events)
    .values(event_id=bindparam("event_id"), event_type=bindparam("event_type"))
    .on_conflict_do_nothing(index_elements=[_events.c.event_id])
    .returning(_events.c.id)
)


async def record_event(
    connection: AsyncSession | AsyncConnection, event_id: str, event_type: str
) -> bool:
    """Record the event; False when it was already recorded (a duplicate delivery).

    A concurrent delivery of the same event waits here on the unique index until the first
    transaction ends, then sees the row (or, if the first rolled back, records it itself).
    """
    result = await connection.execute(
        RECORD_EVENT, {"event_id": event_id, "event_type": event_type}
    )
    return result.scalar() is not None


# The same statement for the driver itself (db/driver.py: SQLAlchemy's execution costs more
# CPU than the round trip on the webhook hot path).
RECORD_EVENT_SQL = (
    "INSERT INTO stripe_events (event_id, event_type) VALUES ($1, $2)"
    " ON CONFLICT (event_id) DO NOTHING RETURNING id"
)


async def record_event_on(driver: Driver, event_id: str, event_type: str) -> bool:
    """`record_event` inside a driver transaction (`db.driver.driver_unit_of_work`)."""
    return await driver.fetchval(RECORD_EVENT_SQL, event_id, event_type) is not None


async def record_event_autocommit(engine: AsyncEngine, event_id: str, event_type: str) -> bool:
    """Record an event as a transaction of its own (one round trip); False for a duplicate."""
    async with pooled_driver(engine) as driver:
        return await record_event_on(driver, event_id, event_type)


# Many events in one statement. Rows go in the order given: callers sort the ids, so two
# processes inserting overlapping batches take the unique index's locks in the same order
# and cannot deadlock.
RECORD_EVENTS_SQL = (
    "INSERT INTO stripe_events (event_id, event_type)"
    " SELECT * FROM unnest($1::text[], $2::text[])"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


async def record_events_autocommit(
    engine: AsyncEngine, events: Sequence[tuple[str, str]]
) -> set[str]:
    """Record distinct (event id, type) pairs as one transaction; the ids that were new."""
    async with pooled_driver(engine) as driver:
        return await record_events_on(driver, events)


async def record_events_on(driver: Driver, events: Sequence[tuple[str, str]]) -> set[str]:
    """`record_events_autocommit` in the caller's transaction, the pairs sorted by id."""
    rows = await driver.fetch(
        RECORD_EVENTS_SQL, [event[0] for event in events], [event[1] for event in events]
    )
    return {str(row[0]) for row in rows}


RECORDED_EVENTS_SQL = "SELECT event_id FROM stripe_events WHERE event_id = ANY($1::text[])"


async def recorded_events(engine: AsyncEngine, event_ids: Sequence[str]) -> set[str]:
    """Which of the ids `stripe_events` holds (committed), in one query."""
    async with pooled_driver(engine) as driver:
        rows = await driver.fetch(RECORDED_EVENTS_SQL, list(event_ids))
    return {str(row[0]) for row in rows}


async def event_recorded(session: AsyncSession, event_id: str) -> bool:
    """Whether the event was processed already (a cheap check before a call to Stripe; the
    insert in `record_event` stays the arbiter)."""
    found = await session.scalar(select(StripeEvent.id).where(StripeEvent.event_id == event_id))
    return found is not None


async def prune_events(session: AsyncSession, older_than: datetime, batch_size: int) -> int:
    """Delete up to `batch_size` events processed before `older_than`; return how many."""
    batch = (
        select(StripeEvent.id)
        .where(StripeEvent.processed_at < older_than)
        .limit(batch_size)
        .scalar_subquery()
    )
    result = await session.execute(delete(StripeEvent).where(StripeEvent.id.in_(batch)))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def recent_events(
    session: AsyncSession, *, event_type: str | None, since: datetime | None, limit: int
) -> list[StripeEvent]:
    """Recorded events, most recently processed first, optionally of one type or since a time."""
    query = select(StripeEvent)
    if event_type is not None:
        query = query.where(StripeEvent.event_type == event_type)
    if since is not None:
        query = query.where(StripeEvent.processed_at >= since)
    query = query.order_by(StripeEvent.processed_at.desc(), StripeEvent.event_id).limit(limit)
    return list(await session.scalars(query))
