"""From ledger rows to `meter:report` jobs: the outbox.

Rows are written first, jobs after the commit. A crash in between leaves pending rows without
jobs; the sweep finds them and enqueues them again (job id = identifier, so a job that does
exist is never doubled). A job that used up its attempts on a long Stripe outage is given a
new run after a cool-down, until Stripe's 35-day limit; only permanent refusals wait for a
person.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sensor_billing.db import SessionFactory
from sensor_billing.jobs.registry import (
    METER_REPORT_JOB_OPTIONS,
    JobNames,
    MeterEventName,
    MeterReportJobData,
)
from sensor_billing.metering import repository
from sensor_billing.metering.repository import PendingReport
from sensor_billing.metering.windows import event_timestamp

logger = logging.getLogger("sensor_billing.metering")

# How long a job that used up its attempts waits before the sweep runs it again.
EXHAUSTED_JOB_COOL_DOWN = timedelta(minutes=10)
SWEEP_BATCH = 5000


def job_for(report: PendingReport, options: Mapping[str, Any]) -> dict[str, Any]:
    event_name: MeterEventName = (
        "active_sensors" if report.event_name == "active_sensors" else "temperature_readings"
    )
    data = MeterReportJobData(
        organization_id=report.organization_id,
        event_name=event_name,
        value=report.value,
        timestamp=event_timestamp(report.window_end),
    )
    return {
        "name": JobNames.METER_REPORT.value,
        "data": data.to_wire(),
        "opts": {**options, "jobId": report.identifier},
    }


@dataclass(frozen=True, slots=True)
class SweepResult:
    enqueued: int
    revived: int
    in_queue: int


async def sweep(
    sessions: SessionFactory,
    queue: Any,
    *,
    now: datetime,
    batch: int = SWEEP_BATCH,
    job_options: Mapping[str, Any] = METER_REPORT_JOB_OPTIONS,
    revive_after: timedelta = EXHAUSTED_JOB_COOL_DOWN,
) -> SweepResult:
    """Give every pending row a live job: add missing ones, revive exhausted ones."""
    async with sessions() as session:
        pending = await repository.pending_reports(session, created_before=now, limit=batch)
    if not pending:
        return SweepResult(0, 0, 0)
    redis = queue.redisConnection.conn
    failed_key = queue.toKey("failed")
    completed_key = queue.toKey("completed")
    async with redis.pipeline(transaction=False) as pipe:
        for report in pending:
            pipe.exists(queue.toKey(report.identifier))
            pipe.hget(queue.toKey(report.identifier), "finishedOn")
            pipe.zscore(failed_key, report.identifier)
            pipe.zscore(completed_key, report.identifier)
        answers = await pipe.execute()
    missing: list[PendingReport] = []
    finished: list[tuple[PendingReport, str, float]] = []
    for index, report in enumerate(pending):
        exists, finished_on, failed_at, completed_at = answers[index * 4 : index * 4 + 4]
        if not exists:
            missing.append(report)
        elif failed_at is not None:
            finished.append((report, "failed", float(finished_on or failed_at)))
        elif completed_at is not None:
            # Completed while the row is still pending: its commit was lost. Run it again.
            finished.append((report, "completed", 0.0))
    if missing:
        await queue.addBulk([job_for(report, job_options) for report in missing])
    cool_down_ms = revive_after.total_seconds() * 1000
    due = [
        (report, state)
        for report, state, finished_ms in finished
        if state != "failed" or now.timestamp() * 1000 - finished_ms >= cool_down_ms
    ]
    if due:
        # A job may have finished (and its row become sent) since the rows were read.
        async with sessions() as session:
            pending_now = await repository.still_pending(session, [r.identifier for r, _ in due])
    revived = 0
    for report, state in due:
        if report.identifier not in pending_now:
            continue
        try:
            job = await queue.getJob(report.identifier)
            if job is not None:
                await job.retry(state, {"resetAttemptsMade": True, "resetAttemptsStarted": True})
                revived += 1
        except Exception as error:  # removed or taken meanwhile: the next sweep looks again
            logger.info("sweep could not revive %s: %s", report.identifier, error)
    return SweepResult(len(missing), revived, len(pending) - len(missing) - revived)
