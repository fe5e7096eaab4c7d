"""SQL for the webhook idempotency store (`stripe_events`). Nothing here commits."""

from __future__ import annotations

from datetime import datetime

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


async def record_event_autocommit(engine: AsyncEngine, event_id: str, event_type: str) -> bool:
    """Record an event as a transaction of its own (one round trip); False for a duplicate.

    Goes to asyncpg directly: SQLAlchemy's statement execution costs more CPU than the round
    trip on this hot path, and with AUTOCOMMIT there is no SQLAlchemy transaction to honour.
    SQLAlchemy does not see errors raised past it, so it cannot tell a dead connection (the
    server restarted or ended it) from a live one: any failure invalidates the connection
    here, or the pool would hand the dead one out again for every later event.
    """
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        try:
            return await driver.fetchval(RECORD_EVENT_SQL, event_id, event_type) is not None
        except BaseException:  # cancelled mid-statement too: the protocol state is unknown
            await connection.invalidate()
            raise


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
