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
from sensor_billing.db.schema import ReportSource
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
        # The worker sends the row's value; the flag lets a negative compensation pass.
        correction=True if report.source == ReportSource.CORRECTION else None,
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
    """Give every pending row a live job: add missing ones, revive exhausted ones. Pages
    through all pending rows, so a backlog larger than one batch is covered in one sweep."""
    enqueued = revived = in_queue = 0
    after: tuple[datetime, int] | None = None
    while True:
        async with sessions() as session:
            page = await repository.pending_reports(
                session, created_before=now, limit=batch, after=after
            )
        if not page:
            break
        result = await _sweep_page(sessions, queue, page, now, job_options, revive_after)
        enqueued, revived = enqueued + result.enqueued, revived + result.revived
        in_queue += result.in_queue
        if len(page) < batch:
            break
        after = (page[-1].created_at, page[-1].id)
    return SweepResult(enqueued, revived, in_queue)


# For each job id (ARGV[2..]): 0 no job, 1 queued or running, 2 failed, 3 completed, followed
# by its finishedOn (ms, or 0). ARGV[1] is the queue's key prefix ("bull:meter-reporting:").
# One script and one flat reply: a pipeline of a command per row costs ~5x as much to parse
# (benchmarks/metering_close.py).
JOB_STATES = """
local prefix = ARGV[1]
local failed, completed = prefix .. 'failed', prefix .. 'completed'
local out = {}
for i = 2, #ARGV do
    local id = ARGV[i]
    local state = 0
    if redis.call('EXISTS', prefix .. id) == 1 then
        state = 1
        if redis.call('ZSCORE', failed, id) then state = 2
        elseif redis.call('ZSCORE', completed, id) then state = 3 end
    end
    out[#out + 1] = state
    out[#out + 1] = state >= 2 and (redis.call('HGET', prefix .. id, 'finishedOn') or 0) or 0
end
return out
"""
_MISSING, _QUEUED, _FAILED, _COMPLETED = 0, 1, 2, 3


async def _sweep_page(
    sessions: SessionFactory,
    queue: Any,
    pending: list[PendingReport],
    now: datetime,
    job_options: Mapping[str, Any],
    revive_after: timedelta,
) -> SweepResult:
    redis = queue.redisConnection.conn
    states = await redis.eval(
        JOB_STATES, 0, queue.toKey(""), *(report.identifier for report in pending)
    )
    missing: list[PendingReport] = []
    due: list[tuple[PendingReport, str]] = []
    cool_down_ms = revive_after.total_seconds() * 1000
    for index, report in enumerate(pending):
        state, finished_on = int(states[index * 2]), float(states[index * 2 + 1] or 0)
        if state == _MISSING:
            missing.append(report)
        elif state == _FAILED and now.timestamp() * 1000 - finished_on >= cool_down_ms:
            due.append((report, "failed"))
        elif state == _COMPLETED:
            # Completed while the row is still pending: its commit was lost. Run it again.
            due.append((report, "completed"))
    if missing:
        await queue.addBulk([job_for(report, job_options) for report in missing])
    revived = 0
    if due:
        # A job may have finished (and its row become sent) since the rows were read.
        async with sessions() as session:
            pending_now = await repository.still_pending(session, [r.identifier for r, _ in due])
        for report, finished_as in due:
            if report.identifier not in pending_now:
                continue
            try:
                job = await queue.getJob(report.identifier)
                if job is not None:
                    await job.retry(
                        finished_as, {"resetAttemptsMade": True, "resetAttemptsStarted": True}
                    )
                    revived += 1
            except Exception as error:  # removed or taken meanwhile: the next sweep looks again
                logger.info("sweep could not revive %s: %s", report.identifier, error)
    return SweepResult(len(missing), revived, len(pending) - len(missing) - revived)
