"""The cheap reads behind the scrape-time gauges. Nothing here writes."""

from __future__ import annotations

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.jobs.registry import QueueNames
from sensor_billing.metering import daily_checks_repository, meter_errors_repository
from sensor_billing.metering import repository as metering_repository
from sensor_billing.metering.daily_checks_repository import RunSummary
from sensor_billing.metering.repository import LedgerBacklog

# bullmq keeps each state of a queue under `<prefix>:<queue>:<state>`. Jobs ready to run sit in
# `wait`, in `prioritized` when they have a priority and in `paused` while the queue is paused:
# all three are "waiting" to a person watching the backlog.
QUEUE_STATE_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "waiting": (("wait", "list"), ("prioritized", "zset"), ("paused", "list")),
    "active": (("active", "list"),),
    "delayed": (("delayed", "zset"),),
    "failed": (("failed", "zset"),),
}


async def ledger_backlog(engine: AsyncEngine) -> LedgerBacklog:
    async with engine.connect() as connection:
        return await metering_repository.ledger_backlog(connection)


async def ledger_stripe_errors(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        return await meter_errors_repository.rows_with_stripe_error(connection)


async def latest_reconciliation(engine: AsyncEngine) -> RunSummary | None:
    async with engine.connect() as connection:
        return await daily_checks_repository.latest_run(connection)


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
