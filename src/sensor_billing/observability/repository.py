"""The cheap queries behind the scrape-time gauges. Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.jobs.registry import QueueNames

# Each subquery is an index-only or small scan: pending rows through the partial index
# `meter_reports_pending_idx`, cursors are one row per organization.
LEDGER_BACKLOG = text(
    """
SELECT
  (SELECT count(*) FROM meter_reports WHERE status = 'pending') AS pending,
  (SELECT extract(epoch FROM now() - min(created_at))
     FROM meter_reports WHERE status = 'pending') AS oldest_pending_age,
  (SELECT extract(epoch FROM max(closed_through)) FROM metering_cursors) AS closed_through
"""
)

# bullmq keeps each state of a queue under `<prefix>:<queue>:<state>`. Jobs ready to run sit in
# `wait`, in `prioritized` when they have a priority and in `paused` while the queue is paused:
# all three are "waiting" to a person watching the backlog.
QUEUE_STATE_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "waiting": (("wait", "list"), ("prioritized", "zset"), ("paused", "list")),
    "active": (("active", "list"),),
    "delayed": (("delayed", "zset"),),
    "failed": (("failed", "zset"),),
}


@dataclass(frozen=True, slots=True)
class LedgerBacklog:
    pending: int
    oldest_pending_age_seconds: float  # 0 when nothing is pending
    closed_through_timestamp: float | None  # None before the first window closes


async def ledger_backlog(engine: AsyncEngine) -> LedgerBacklog:
    async with engine.connect() as connection:
        row = (await connection.execute(LEDGER_BACKLOG)).one()
    return LedgerBacklog(
        pending=int(row.pending),
        oldest_pending_age_seconds=max(float(row.oldest_pending_age or 0), 0.0),
        closed_through_timestamp=(
            None if row.closed_through is None else float(row.closed_through)
        ),
    )


async def queue_depth(
    redis: Redis, queue: QueueNames = QueueNames.METER_REPORTING, *, prefix: str = "bull"
) -> dict[str, int]:
    """Jobs per state (waiting, active, delayed, failed) in one round trip."""
    pipeline = redis.pipeline(transaction=False)
    order: list[str] = []
    for state, keys in QUEUE_STATE_KEYS.items():
        for suffix, kind in keys:
            key = f"{prefix}:{queue.value}:{suffix}"
            if kind == "list":
                pipeline.llen(key)
            else:
                pipeline.zcard(key)
            order.append(state)
    counts = dict.fromkeys(QUEUE_STATE_KEYS, 0)
    for state, count in zip(order, await pipeline.execute(), strict=True):
        counts[state] += int(count)
    return counts
