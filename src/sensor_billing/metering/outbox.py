"""From ledger rows to `meter:report` jobs: the outbox.

Rows are written first, jobs after the commit. A crash in between leaves pending rows without
jobs; the sweep finds them and enqueues them again (job id = identifier, so a job that does
exist is never doubled). A job that used up its attempts on a long Stripe outage is given a
new run after a cool-down, until Stripe's 35-day limit; only permanent refusals wait for a
person.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sensor_billing.db import SessionFactory
from sensor_billing.db.schema import ReportSource
from sensor_billing.errors import InvalidJobDataError
from sensor_billing.jobs.admin import redis_text
from sensor_billing.jobs.meter_reports import parse_meter_report_data
from sensor_billing.jobs.registry import (
    METER_REPORT_JOB_OPTIONS,
    JobNames,
    MeterEventName,
    MeterReportJobData,
)
from sensor_billing.metering import repository
from sensor_billing.metering.reporter import (
    FOREIGN_IDENTIFIER_PREFIX,
    WINDOW_IDENTIFIER_PREFIX,
    foreign_identifier,
)
from sensor_billing.metering.repository import PendingReport
from sensor_billing.metering.windows import event_timestamp

logger = logging.getLogger("sensor_billing.metering")

# How long a job that used up its attempts waits before the sweep runs it again.
EXHAUSTED_JOB_COOL_DOWN = timedelta(minutes=10)
SWEEP_BATCH = 5000
# Failed jobs read per Redis call when the sweep looks for other producers' reports that never
# got a ledger row.
FAILED_JOBS_SCANNED = 2000
# At most this many failed jobs are read per sweep (a page may add the rest of a millisecond's
# jobs). The seed's options keep the newest 1,000 failed jobs, but another producer's may keep
# every one: read whole at every close, the set would cost more each time, without bound. The
# next sweep goes on after the last millisecond read (the cursor, kept in Redis), and once a
# sweep has read up to the cool-down's cutoff, the next starts again from the oldest: every
# failed job is read once per round of ceil(failed jobs / FAILED_JOBS_PER_SWEEP) sweeps, so
# none that needs reviving is left, even one whose failure reached Redis late, behind the
# cursor (the next round reads it).
FAILED_JOBS_PER_SWEEP = 20_000
# Under the queue's prefix; the ':' keeps it apart from any job id (BullMQ refuses ':' in ids).
FAILED_JOBS_CURSOR = "sensor-billing:failed-sweep-cursor"
# The cursor of a round that has not begun: the oldest failed job on.
ROUND_START = "-inf"


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
    revived += await _revive_jobs_without_rows(sessions, queue, now, revive_after)
    return SweepResult(enqueued, revived, in_queue)


async def enqueue_reports(
    sessions: SessionFactory,
    queue: Any,
    reports: list[PendingReport],
    *,
    now: datetime,
    job_options: Mapping[str, Any] = METER_REPORT_JOB_OPTIONS,
) -> SweepResult:
    """Give these pending rows a live job now, as the sweep would but without its cool-down:
    a missing job is added; a failed or completed one (the job of a row made pending again,
    `usage resend`) runs again with fresh attempts."""
    return await _sweep_page(sessions, queue, reports, now, job_options, timedelta(0))


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
            if report.identifier in pending_now:
                revived += await _revive(queue, report.identifier, finished_as)
    return SweepResult(len(missing), revived, len(pending) - len(missing) - revived)


# One page of the failed jobs that finished before ARGV[2] (ms): from ARGV[5] on (a score bound,
# '-inf' or '(<ms>'), ARGV[3] of them, and, when the page is full, every other job that
# finished in its last millisecond, so that the next page, from after that millisecond, skips
# none. The reply: how many ids the page held, the next page's bound ('' once the page reached
# ARGV[2]), then, for each job other than window and correction jobs (ids starting with
# ARGV[4]), its id, name, data and creation time.
FAILED_JOBS = """
local prefix = ARGV[1]
local failed = prefix .. 'failed'
local limit = tonumber(ARGV[3])
local found = redis.call(
    'ZRANGEBYSCORE', failed, ARGV[5], ARGV[2], 'WITHSCORES', 'LIMIT', 0, limit)
local ids, next_bound = {}, ''
for i = 1, #found, 2 do ids[#ids + 1] = found[i] end
if #ids == limit then
    local last = found[#found]
    while #ids > 0 and found[#ids * 2] == last do ids[#ids] = nil end
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', failed, last, last)) do
        ids[#ids + 1] = id
    end
    next_bound = '(' .. last
end
local out = {#ids, next_bound}
for _, id in ipairs(ids) do
    if string.sub(id, 1, #ARGV[4]) ~= ARGV[4] then
        local job = redis.call('HMGET', prefix .. id, 'name', 'data', 'timestamp')
        out[#out + 1] = id
        out[#out + 1] = job[1] or ''
        out[#out + 1] = job[2] or ''
        out[#out + 1] = job[3] or '0'
    end
end
return out
"""


async def _revive_jobs_without_rows(
    sessions: SessionFactory, queue: Any, now: datetime, revive_after: timedelta
) -> int:
    """Another producer's job is the only record of its usage until the worker writes its
    row. The worker delays such a job while the row cannot be written (jobs/worker.py
    `_postpone`) rather than failing it; one that failed anyway (an older worker, a bug) is
    revived after the cool-down, once its organization exists. One with invalid data stays
    failed, for a person."""
    redis = queue.redisConnection.conn
    cutoff_ms = now.timestamp() * 1000 - revive_after.total_seconds() * 1000
    # Jobs that stay failed for good (bad data, refused by Stripe) are the oldest and never
    # leave, so the sweeps read on from where the last one stopped (FAILED_JOBS_PER_SWEEP),
    # not from the first page each time. Each page is checked against PostgreSQL on its own
    # (memory and query size stay one page's); jobs are revived after the scan.
    cursor_key = queue.toKey(FAILED_JOBS_CURSOR)
    stored = await redis.get(cursor_key)
    bound = ROUND_START if stored is None else redis_text(stored)
    budget = FAILED_JOBS_PER_SWEEP
    due: list[str] = []
    while budget > 0:
        scanned, next_bound, *page = await redis.eval(
            FAILED_JOBS,
            0,
            queue.toKey(""),
            int(cutoff_ms),
            min(FAILED_JOBS_SCANNED, budget),
            WINDOW_IDENTIFIER_PREFIX,
            bound,
        )
        due.extend(await _jobs_without_rows(sessions, page))
        budget -= int(scanned)
        bound = redis_text(next_bound) or ROUND_START
        if bound == ROUND_START:  # read up to the cutoff: the next sweep begins a new round
            break
    revived = 0
    for job_id in due:
        if await _revive(queue, job_id, "failed"):
            revived += 1
            logger.info("revived failed job %s: it has no ledger row yet", job_id)
    # Moved on only now: a sweep that stops before its revivals leaves them to the next one.
    await redis.set(cursor_key, bound)
    return revived


async def _revive(queue: Any, job_id: str, finished_as: str) -> bool:
    """Run a finished job again with its attempts reset; False if it is gone or was taken."""
    try:
        job = await queue.getJob(job_id)
        if job is None:
            return False
        await job.retry(finished_as, {"resetAttemptsMade": True, "resetAttemptsStarted": True})
    except Exception as error:  # removed or taken meanwhile: the next sweep looks again
        logger.info("sweep could not revive %s: %s", job_id, error)
        return False
    return True


async def _jobs_without_rows(sessions: SessionFactory, page: list[Any]) -> list[str]:
    """Of one page of failed jobs (id, name, data, creation time, flat), the `meter:report`
    jobs with valid data, an existing organization and no ledger row."""
    # job id -> (the identifiers its row could have, its organization)
    candidates: dict[str, tuple[list[str], Any]] = {}
    for index in range(0, len(page), 4):
        job_id, name, raw, created = (redis_text(value) for value in page[index : index + 4])
        if name != JobNames.METER_REPORT.value:
            continue
        try:
            data = parse_meter_report_data(json.loads(raw))
        except (InvalidJobDataError, ValueError):
            continue
        identifiers = [foreign_identifier(job_id, int(created or 0))]
        if job_id.startswith(FOREIGN_IDENTIFIER_PREFIX):
            identifiers.append(job_id)  # the sweep's own job for such a row
        candidates[job_id] = (identifiers, data.organization_id)
    if not candidates:
        return []
    async with sessions() as session:
        with_rows = await repository.existing_identifiers(
            session, [identifier for ids, _ in candidates.values() for identifier in ids]
        )
        organizations = await repository.existing_organizations(
            session, {organization for _, organization in candidates.values()}
        )
    return [
        job_id
        for job_id, (identifiers, organization) in candidates.items()
        if organization in organizations and not with_rows.intersection(identifiers)
    ]
