"""SQL for the webhook idempotency store (`stripe_events`). Nothing here commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.db.schema import StripeEvent


async def record_event(session: AsyncSession, event_id: str, event_type: str) -> bool:
    """Record the event; False when it was already recorded (a duplicate delivery).

    A concurrent delivery of the same event waits here on the unique index until the first
    transaction ends, then sees the row (or, if the first rolled back, records it itself).
    """
    inserted = await session.scalar(
        insert(StripeEvent)
        .values(event_id=event_id, event_type=event_type)
        .on_conflict_do_nothing(index_elements=[StripeEvent.event_id])
        .returning(StripeEvent.id)
    )
    return inserted is not None


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
