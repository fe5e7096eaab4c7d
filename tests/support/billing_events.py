"""The `billing-events` queue as the product reads it: a Node BullMQ Worker
(tests/support/node_producer/read_billing_events.js, installed by scripts/ensure-node-producer)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sensor_billing.jobs import QueueNames
from sensor_billing.jobs.connection import open_queue
from tests.metering.test_node_producer import PRODUCER, require_node_producer

# Every key of a `billing:entitlement-changed` job's data, as the consumer receives it.
ENTITLEMENT_CHANGED_KEYS = {"organizationId", "entitled", "reason", "until", "eventId", "decidedAt"}


async def read_with_node(redis_url: str, *, idle_ms: int = 1000) -> list[dict[str, Any]]:
    """Every job the Node consumer took off `billing-events` until the queue stayed empty for
    `idle_ms`: [{"id", "name", "data"}], in the order it processed them."""
    require_node_producer()
    process = await asyncio.create_subprocess_exec(
        "node",
        str(PRODUCER / "read_billing_events.js"),
        json.dumps({"redisUrl": redis_url, "idleMs": idle_ms, "timeoutMs": 30_000}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


async def queued_jobs(redis_url: str) -> list[Any]:
    """The jobs waiting on `billing-events` (bullmq Jobs), oldest first."""
    queue = open_queue(redis_url, QueueNames.BILLING_EVENTS)
    try:
        return list(await queue.getJobs(["waiting"], asc=True))
    finally:
        await queue.close()
