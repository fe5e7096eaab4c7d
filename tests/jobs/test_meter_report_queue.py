"""Meter report jobs on the real `meter-reporting` queue in Redis, read back through bullmq."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bullmq import Queue, Worker

from sensor_billing.errors import InvalidJobDataError
from sensor_billing.jobs import (
    METER_REPORT_JOB_OPTIONS,
    JobNames,
    MeterReportJobData,
    QueueNames,
    enqueue_meter_report,
)
from sensor_billing.jobs.connection import fix_bullmq_block_timeouts, open_queue

ORG = uuid.UUID("0b6f4a8e-6a8e-4c4a-9f5e-1d2c3b4a5f60")


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[Any]:
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    yield queue
    await queue.close()


async def test_meter_report_job_lands_under_meter_reporting_with_the_seed_options(
    queue: Any,
) -> None:
    data = MeterReportJobData(
        organization_id=ORG, event_name="temperature_readings", value=120, timestamp=1_700_000_000
    )
    job_id = await enqueue_meter_report(queue, data, job_id="org-window-1")

    reader = Queue(QueueNames.METER_REPORTING.value, {"connection": queue.redisConnection.conn})
    job = await reader.getJob(job_id)
    assert job is not None
    assert job.name == JobNames.METER_REPORT.value
    assert job.name == "meter:report"
    assert job.data == {
        "organizationId": str(ORG),
        "eventName": "temperature_readings",
        "value": 120,
        "timestamp": 1_700_000_000,
    }
    assert job.opts["attempts"] == 5
    assert job.opts["backoff"] == {"type": "exponential", "delay": 5000}
    assert job.opts["removeOnComplete"] == 200
    assert job.opts["removeOnFail"] == 1000
    assert await reader.getJobCounts("waiting") == {"waiting": 1}
    keys = await queue.redisConnection.conn.keys("bull:meter-reporting:*")
    assert "bull:meter-reporting:org-window-1" in keys


async def test_same_job_id_twice_is_one_job(queue: Any) -> None:
    data = MeterReportJobData(organization_id=ORG, event_name="active_sensors", value=3)
    await enqueue_meter_report(queue, data, job_id="same")
    await enqueue_meter_report(queue, data, job_id="same")
    assert await queue.getJobCounts("waiting") == {"waiting": 1}


async def test_invalid_data_enqueues_nothing(queue: Any) -> None:
    with pytest.raises(InvalidJobDataError, match="value"):
        await enqueue_meter_report(
            queue, {"organizationId": str(ORG), "eventName": "active_sensors", "value": -2}
        )
    assert await queue.getJobCounts("waiting", "delayed") == {"waiting": 0, "delayed": 0}


async def test_always_failing_job_is_attempted_five_times_with_growing_delays(
    queue: Any, redis_url: str
) -> None:
    fix_bullmq_block_timeouts()
    # The seed's options with the backoff scaled from 5 s to 50 ms: same policy, faster test.
    options = {**METER_REPORT_JOB_OPTIONS, "backoff": {"type": "exponential", "delay": 50}}
    data = MeterReportJobData(organization_id=ORG, event_name="active_sensors", value=1)
    attempt_times: list[float] = []
    finished = asyncio.Event()

    async def always_fails(job: Any, token: str) -> None:
        attempt_times.append(time.monotonic())
        if len(attempt_times) >= 5:
            finished.set()
        raise RuntimeError("Stripe is down")

    worker = Worker(
        QueueNames.METER_REPORTING.value, always_fails, {"connection": redis_url, "concurrency": 1}
    )
    try:
        job_id = await enqueue_meter_report(queue, data, job_id="doomed", options=options)
        await asyncio.wait_for(finished.wait(), timeout=30)
        for _ in range(100):  # the fifth failure is recorded just after the processor raises
            if await queue.getJobCounts("failed") == {"failed": 1}:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a sixth attempt, if any, would start within 0.8 s
    finally:
        await worker.close()

    assert len(attempt_times) == 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempt_times)]
    # Exponential backoff: 50, 100, 200, 400 ms. Each wait is at least its delay, which a
    # fixed or linear backoff would not reach by the fourth. (No upper bound, nor "each longer
    # than the last": on a loaded machine a 50 ms wait can overrun the 100 ms one.)
    for gap, delay in zip(gaps, [0.05, 0.1, 0.2, 0.4], strict=True):
        assert gap >= delay * 0.9
    job = await queue.getJob(job_id)
    assert job.attemptsMade == 5
    assert job.failedReason == "Stripe is down"
    assert await queue.getJobState(job_id) == "failed"


async def test_idle_worker_runs_a_job_delayed_longer_than_redis_clients_read_timeout(
    queue: Any, redis_url: str
) -> None:
    # Retries back off 5, 10, 20, 40 s and the close-windows schedule fires every few minutes:
    # both are delayed jobs that an idle worker must wake for. redis-py 8 cut bullmq's
    # blocking wait at 5 s and the worker then never woke (pyproject pins redis-py < 8).
    fix_bullmq_block_timeouts()
    done = asyncio.Event()

    async def record(job: Any, token: str) -> None:
        done.set()

    worker = Worker(QueueNames.METER_REPORTING.value, record, {"connection": redis_url})
    try:
        await asyncio.sleep(0.3)  # idle: blocked waiting for work
        data = MeterReportJobData(organization_id=ORG, event_name="active_sensors", value=1)
        await enqueue_meter_report(queue, data, options={**METER_REPORT_JOB_OPTIONS, "delay": 6000})
        await asyncio.wait_for(done.wait(), timeout=15)
    finally:
        await worker.close()
