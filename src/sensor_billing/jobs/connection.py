"""bullmq connection set-up shared by producers and workers."""

from __future__ import annotations

from typing import Any

from bullmq import Queue
from bullmq.redis_connection import RedisConnection

from sensor_billing.jobs.registry import QueueNames


def fix_bullmq_block_timeouts() -> None:
    """Let bullmq block for 1 ms instead of whole seconds.

    bullmq 3.4.4's worker never asks Redis for its version, so it assumes an old server and
    rounds blocking waits up to whole seconds: retries and delayed jobs fire up to 1 s late
    (docs: DESIGN.md "bullmq (Python) facts"). Redis 7.0.8+ supports both capabilities.
    """
    RedisConnection.capabilities = {"canBlockFor1Ms": True, "canDoubleTimeout": True}


def open_queue(redis_url: str, name: QueueNames, *, prefix: str = "bull") -> Any:
    return Queue(name.value, {"connection": redis_url, "prefix": prefix})
