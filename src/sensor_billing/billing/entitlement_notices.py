"""Telling the product when an organization's entitlement changes: `billing:entitlement-changed`
jobs on the `billing-events` queue (docs/billing.md "Hearing of changes").

A change is measured against what the organization was last told (`notified_entitlements`),
not against a reading taken before the webhook's handler ran: that costs nothing on deliveries
that change no state, and two deliveries about one organization in flight at once (an invoice
and its subscription) cannot both miss the change, nor both announce it: each locks the
organization's row first, and the second then reads what the first committed.

The notice is written in the transaction that made the change and its job added after the
commit (`publish`), so a rolled-back delivery adds none. The worker's sweep then finds each
notice's job in the queue and marks the notice, or adds the job when its add was lost (Redis
away, a crash after the commit); the job id is the notice's, so a job added twice is one job.
A grace period ends with no webhook: the worker's periodic check notices it
(`notice_grace_ends`). Notices whose job was added long ago are pruned with the webhook events
(`prune_enqueued_notices`); what each organization was last told stays.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.billing import repository as billing_repository
from sensor_billing.billing.entitlement import Entitlement
from sensor_billing.billing.entitlement_notices_repository import (
    NoticeRow,
    grace_ended_organizations,
    mark_enqueued,
    prune_enqueued,
    record_notices,
    standing_and_notified,
    unenqueued_notices,
)
from sensor_billing.billing.service import GroupConflict
from sensor_billing.billing.standing import entitlement_of
from sensor_billing.db.driver import Driver, driver_unit_of_work, pooled_driver
from sensor_billing.jobs.registry import (
    ENTITLEMENT_CHANGED_JOB_OPTIONS,
    EntitlementChangedJobData,
    JobNames,
)
from sensor_billing.webhooks.retention import (
    DEFAULT_RETENTION,
    PRUNE_BATCH_SIZE,
    prune_in_batches,
)

logger = logging.getLogger("sensor_billing.billing")

# What an organization never notified is taken to have been told: a new organization has no
# subscription, so its first subscription is a change.
NEVER_NOTIFIED = Entitlement(False, "no_subscription")
# A notice younger than this is left to the process that wrote it: it adds the job right after
# its commit, and the sweep would only add the same job id again.
SWEEP_AFTER = timedelta(minutes=1)
SWEEP_BATCH = 1000
GRACE_CHECK_BATCH = 1000
# A webhook's answer waits for its job's add at most this long; past it the sweep adds the job.
PUBLISH_TIMEOUT_SECONDS = 2.0

# The job id from the organization and the entitlement it was told before.
JobIdFor = Callable[[uuid.UUID, Entitlement], str]


def event_job_id(event_id: str) -> JobIdFor:
    # '-', not ':': BullMQ refuses ':' in custom job ids. Event ids are `evt_` and letters.
    return lambda organization_id, _previous: f"entitlement-{event_id}-{organization_id}"


def grace_end_job_id(organization_id: uuid.UUID, previous: Entitlement) -> str:
    """A grace period's end has no event: its instant names the job, so every check that
    finds it (several workers, a retried check) names the same one."""
    end = previous.until.strftime("%Y%m%dT%H%M%S%fZ") if previous.until else "none"
    return f"entitlement-grace-{organization_id}-{end}"


def job_of(notice: NoticeRow) -> dict[str, Any]:
    """The notice as `Queue.addBulk` takes a job."""
    data = EntitlementChangedJobData(
        organization_id=notice.organization_id,
        entitled=notice.entitlement.entitled,
        reason=notice.entitlement.reason,
        until=notice.entitlement.until,
        event_id=notice.event_id,
        decided_at=notice.decided_at,
    )
    return {
        "name": JobNames.ENTITLEMENT_CHANGED.value,
        "data": data.to_wire(),
        "opts": {**ENTITLEMENT_CHANGED_JOB_OPTIONS, "jobId": notice.job_id},
    }


@dataclass(frozen=True, slots=True)
class NoticeTarget:
    """The organization a notice may be for: by id, else by its Stripe customer."""

    organization_id: uuid.UUID | None
    customer_id: str | None
    event_id: str | None
    job_id_for: JobIdFor


async def notice_change(
    connection: Driver,
    *,
    organization_id: uuid.UUID | None = None,
    customer_id: str | None = None,
    now: datetime,
    grace: timedelta,
    event_id: str | None,
    job_id_for: JobIdFor,
) -> NoticeRow | None:
    """In the caller's transaction: the organization (by id, else by its Stripe customer),
    locked; its entitlement at `now` against the one it was last told; a notice when they
    differ. None when there is no such organization, no change, or the notice exists."""
    target = NoticeTarget(organization_id, customer_id, event_id, job_id_for)
    notices = await notice_changes(connection, [target], now=now, grace=grace)
    return notices[0] if notices else None


async def notice_changes(
    connection: Driver, targets: Sequence[NoticeTarget], *, now: datetime, grace: timedelta
) -> list[NoticeRow]:
    """`notice_change` for many organizations, each step one statement. Raises
    `GroupConflict` when two targets are one organization (its notice would depend on which
    is taken first)."""
    organization_ids = [t.organization_id for t in targets if t.organization_id is not None]
    customer_ids = [
        t.customer_id for t in targets if t.organization_id is None and t.customer_id is not None
    ]
    if not organization_ids and not customer_ids:
        return []
    rows = await billing_repository.organizations_for_update(
        connection, organization_ids, customer_ids
    )
    by_id = {row.id: row for row in rows}
    by_customer = {row.stripe_customer_id: row for row in rows if row.stripe_customer_id}
    found_for: list[tuple[NoticeTarget, uuid.UUID]] = []
    for target in targets:
        organization = (
            by_id.get(target.organization_id)
            if target.organization_id is not None
            else by_customer.get(target.customer_id)
        )
        if organization is not None:
            found_for.append((target, organization.id))
    if len({organization_id for _, organization_id in found_for}) != len(found_for):
        raise GroupConflict("two events of the group are about one organization")
    read = await standing_and_notified(connection, [org for _, org in found_for])
    notices = []
    for target, organization_id in found_for:
        found = read.get(organization_id)
        if found is None:
            continue
        current = entitlement_of(found.standing, now=now, grace=grace)
        previous = found.notified or NEVER_NOTIFIED
        if current != previous:
            notices.append(
                NoticeRow(
                    job_id=target.job_id_for(organization_id, previous),
                    organization_id=organization_id,
                    event_id=target.event_id,
                    entitlement=current,
                    decided_at=now,
                )
            )
    recorded = await record_notices(connection, notices)
    return [notice for notice in notices if notice.job_id in recorded]


async def publish(queue: Any, notices: Sequence[NoticeRow]) -> int:
    """After the commit: add the notices' jobs. A failure is logged and left to the sweep
    (the notices are committed); how many were added. Nothing is written here: the sweep
    marks the notice once it finds the job (a write per change on the webhook path cost more
    than the add itself, benchmarks/webhook_throughput.py)."""
    if not notices:
        return 0
    jobs = [job_of(notice) for notice in notices]
    try:
        # One job through `add`: half the CPU of `addBulk`'s transaction for one.
        adding = (
            queue.add(jobs[0]["name"], jobs[0]["data"], jobs[0]["opts"])
            if len(jobs) == 1
            else queue.addBulk(jobs)
        )
        await asyncio.wait_for(adding, PUBLISH_TIMEOUT_SECONDS)
    except Exception as error:  # Redis away or slow: the sweep adds them
        logger.warning(
            "entitlement notices %s not added (the sweep will): %s",
            ", ".join(notice.job_id for notice in notices),
            error,
        )
        return 0
    return len(notices)


async def sweep_entitlement_notices(
    engine: AsyncEngine,
    queue: Any,
    *,
    now: datetime,
    after: timedelta = SWEEP_AFTER,
    batch: int = SWEEP_BATCH,
) -> int:
    """Every notice older than `after` not marked yet: its job added if it is not in the
    queue, then the notice marked. How many jobs were added."""
    added = 0
    redis = queue.redisConnection.conn
    while True:
        async with pooled_driver(engine) as connection:
            page = await unenqueued_notices(connection, before=now - after, limit=batch)
        if not page:
            return added
        in_queue = await redis.eval(
            JOBS_EXIST, 0, queue.toKey(""), *(notice.job_id for notice in page)
        )
        missing = [notice for notice, found in zip(page, in_queue, strict=True) if not found]
        if missing:
            await queue.addBulk([job_of(notice) for notice in missing])
        async with pooled_driver(engine) as connection:
            await mark_enqueued(connection, [notice.job_id for notice in page])
        added += len(missing)
        if len(page) < batch:
            return added


# For each job id (ARGV[2..]), 1 if the job's hash exists under the queue's prefix (ARGV[1]),
# in any state, else 0.
JOBS_EXIST = """
local out = {}
for i = 2, #ARGV do out[#out + 1] = redis.call('EXISTS', ARGV[1] .. ARGV[i]) end
return out
"""


async def notice_grace_ends(
    engine: AsyncEngine,
    queue: Any,
    *,
    now: datetime,
    grace: timedelta,
    batch: int = GRACE_CHECK_BATCH,
) -> int:
    """A notice for each organization told it was entitled in a grace period that has ended
    by `now` (no webhook marks that moment). One transaction per organization; how many
    notices were added to the queue."""
    async with pooled_driver(engine) as connection:
        organizations = await grace_ended_organizations(connection, now=now, limit=batch)
    notices = []
    for organization_id in organizations:
        async with driver_unit_of_work(engine) as connection:
            notice = await notice_change(
                connection,
                organization_id=organization_id,
                now=now,
                grace=grace,
                event_id=None,
                job_id_for=grace_end_job_id,
            )
        if notice is not None:
            notices.append(notice)
    return await publish(queue, notices)


async def prune_enqueued_notices(
    engine: AsyncEngine,
    older_than: timedelta = DEFAULT_RETENTION,
    *,
    now: datetime | None = None,
    batch_size: int = PRUNE_BATCH_SIZE,
) -> int:
    """Delete the notices whose job was marked added longer ago than `older_than`, in
    batches, each its own transaction (as `webhooks.retention.prune_processed_events`); how
    many. A notice never marked added is kept whatever its age: the sweep may still have to
    add its job. `notified_entitlements` is left alone (what a change is measured against).

    The notice's unique (event, organization) is what keeps a redelivered event from noticing
    again; once the notice is pruned, no redelivery can reach it: the notice was written in
    the transaction that recorded its event, whose id `stripe_events` keeps for its own 30
    days, and Stripe retries an event for 3 days at most (live mode; docs: webhooks). Hence
    the same refusal of ages inside that window."""

    async def delete_batch(before: datetime, limit: int) -> int:
        async with driver_unit_of_work(engine) as connection:
            return await prune_enqueued(connection, before=before, limit=limit)

    return await prune_in_batches(delete_batch, older_than, now=now, batch_size=batch_size)
