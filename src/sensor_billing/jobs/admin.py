"""What an operator asks of the queues: counts per state, failed jobs, retrying them.

Every helper opens its queues itself and closes them before returning; the caller checks that
Redis answers first (`jobs.health.redis_problem`), since bullmq only fails on first use.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sensor_billing.jobs.connection import open_queue
from sensor_billing.jobs.registry import QueueNames

# The states an operator reads. bullmq keeps prioritized jobs in a set of their own; they are
# waiting all the same, so they are counted as waiting.
JOB_STATES = ("waiting", "active", "delayed", "completed", "failed")
# Failed jobs listed per queue at most (meter reports keep the last 1000 failed ones).
FAILED_JOBS_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class FailedJob:
    queue: str
    id: str
    name: str
    attempts_made: int
    failed_reason: str
    failed_at: datetime | None
    data: dict[str, Any]


class RetryOutcome(enum.StrEnum):
    RETRIED = "retried"
    NOT_FOUND = "not_found"  # no queue knows the id (removed, or never existed)
    NOT_FAILED = "not_failed"  # it exists but is not in the failed state


@dataclass(frozen=True, slots=True)
class RetryResult:
    job_id: str
    outcome: RetryOutcome
    queue: str | None = None
    state: str | None = None  # the job's state when it could not be retried


@asynccontextmanager
async def opened_queue(redis_url: str, name: QueueNames) -> AsyncIterator[Any]:
    queue = open_queue(redis_url, name)
    try:
        yield queue
    finally:
        await queue.close()


def redis_text(value: object) -> str:
    """A Redis reply as text (redis-py gives bytes unless decoding is on)."""
    return value.decode() if isinstance(value, bytes) else str(value)


async def job_counts(redis_url: str) -> dict[str, dict[str, int]]:
    """Jobs per queue (every queue in `QueueNames`) and per state in `JOB_STATES`."""
    counts: dict[str, dict[str, int]] = {}
    for name in QueueNames:
        async with opened_queue(redis_url, name) as queue:
            raw = await queue.getJobCounts(*JOB_STATES, "prioritized")
        per_state = {state: int(raw.get(state, 0)) for state in JOB_STATES}
        per_state["waiting"] += int(raw.get("prioritized", 0))
        counts[name.value] = per_state
    return counts


async def failed_jobs(redis_url: str, limit: int = FAILED_JOBS_LIMIT) -> list[FailedJob]:
    """Failed jobs of every queue, newest failure first within each queue."""
    found: list[FailedJob] = []
    for name in QueueNames:
        async with opened_queue(redis_url, name) as queue:
            jobs = await queue.getFailed(0, limit - 1)
        for job in jobs:
            finished = getattr(job, "finishedOn", None)
            found.append(
                FailedJob(
                    queue=name.value,
                    id=redis_text(job.id),
                    name=redis_text(job.name),
                    attempts_made=int(job.attemptsMade),
                    failed_reason=redis_text(getattr(job, "failedReason", None) or ""),
                    failed_at=datetime.fromtimestamp(int(finished) / 1000, UTC)
                    if finished
                    else None,
                    data=dict(job.data) if isinstance(job.data, dict) else {},
                )
            )
    return found


async def retry_job(redis_url: str, job_id: str) -> RetryResult:
    """Move one failed job back to waiting, whichever queue holds it."""
    for name in QueueNames:
        async with opened_queue(redis_url, name) as queue:
            job = await queue.getJob(job_id)
            if job is None:
                continue
            state = redis_text(await queue.getJobState(job_id))
            if state != "failed":
                return RetryResult(job_id, RetryOutcome.NOT_FAILED, name.value, state)
            try:
                # A fresh set of attempts: the job ran out of them, which is why it failed.
                await job.retry("failed", {"resetAttemptsMade": True})
            except Exception:  # bullmq raises TypeError for a job that left `failed` meanwhile
                state = redis_text(await queue.getJobState(job_id))
                if state == "unknown":
                    return RetryResult(job_id, RetryOutcome.NOT_FOUND, name.value)
                return RetryResult(job_id, RetryOutcome.NOT_FAILED, name.value, state)
            return RetryResult(job_id, RetryOutcome.RETRIED, name.value)
    return RetryResult(job_id, RetryOutcome.NOT_FOUND)


async def retry_all_failed(redis_url: str) -> dict[str, int]:
    """Move every failed job of every queue back to waiting; how many per queue."""
    retried: dict[str, int] = {}
    for name in QueueNames:
        async with opened_queue(redis_url, name) as queue:
            before = int((await queue.getJobCounts("failed")).get("failed", 0))
            if before:
                await queue.retryJobs({"state": "failed"})
            after = int((await queue.getJobCounts("failed")).get("failed", 0))
        retried[name.value] = max(before - after, 0)
    return retried
