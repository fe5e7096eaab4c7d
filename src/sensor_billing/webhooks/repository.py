"""SQL for the webhook idempotency store (`stripe_events`). Nothing here commits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

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


# The same statement for the driver itself, used on autocommit connections where no
# SQLAlchemy transaction is open to bypass (see record_event_autocommit).
RECORD_EVENT_SQL = (
    "INSERT INTO stripe_events (event_id, event_type) VALUES ($1, $2)"
    " ON CONFLICT (event_id) DO NOTHING RETURNING id"
)


@asynccontextmanager
async def autocommit_driver(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection's asyncpg connection, each statement its own transaction.

    Statements go to asyncpg directly: SQLAlchemy's statement execution costs more CPU than the
    round trip on the webhook hot path, and with AUTOCOMMIT there is no SQLAlchemy transaction
    to honour. SQLAlchemy does not see errors raised past it, so it cannot tell a dead
    connection (the server restarted or ended it) from a live one: any failure invalidates the
    connection here, or the pool would hand the dead one out again for every later event.
    """
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        try:
            yield driver
        except BaseException:  # cancelled mid-statement too: the protocol state is unknown
            await connection.invalidate()
            raise


async def record_event_autocommit(engine: AsyncEngine, event_id: str, event_type: str) -> bool:
    """Record an event as a transaction of its own (one round trip); False for a duplicate."""
    async with autocommit_driver(engine) as driver:
        return await driver.fetchval(RECORD_EVENT_SQL, event_id, event_type) is not None


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
    async with autocommit_driver(engine) as driver:
        rows = await driver.fetch(
            RECORD_EVENTS_SQL, [event[0] for event in events], [event[1] for event in events]
        )
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
