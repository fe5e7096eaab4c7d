"""SQL for entitlement notices (`billing/entitlement_notices.py`): the outbox of the
`billing-events` queue and the entitlement each organization was last told of. Statements run
on the driver (`db.driver`), in the caller's transaction; nothing here commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import any_, bindparam, delete, func, literal_column, select, update

from sensor_billing.billing.entitlement import Entitlement
from sensor_billing.billing.repository import table_of
from sensor_billing.billing.standing_repository import (
    OrganizationStanding,
    asyncpg_text,
    standing_from_row,
    standing_query,
)
from sensor_billing.db.driver import Driver, DriverStatement
from sensor_billing.db.schema import EntitlementNotice, NotifiedEntitlement, Organization

_notices = table_of(EntitlementNotice)
_notified = table_of(NotifiedEntitlement)

# The standing query's columns, then the notified entitlement's (NULLs when never notified).
STANDING_AND_NOTIFIED_SQL = asyncpg_text(
    standing_query()
    .add_columns(_notified.c.entitled, _notified.c.reason, _notified.c.until)
    .outerjoin(_notified, _notified.c.organization_id == Organization.id)
    .where(Organization.id == literal_column("ANY($1::uuid[])"))
)


@dataclass(frozen=True, slots=True)
class StandingAndNotified:
    standing: OrganizationStanding
    # None when the organization was never notified.
    notified: Entitlement | None


async def standing_and_notified(
    connection: Driver, organization_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, StandingAndNotified]:
    """Of each organization that exists, in one statement. Run it after locking the
    organizations' rows: it then reads what the transactions that held the locks committed
    (a statement's snapshot starts with it)."""
    found = {}
    for row in await connection.fetch(STANDING_AND_NOTIFIED_SQL, list(organization_ids)):
        *standing, entitled, reason, until = tuple(row.values())
        notified = None if entitled is None else Entitlement(entitled, reason, until)
        read = StandingAndNotified(standing_from_row(standing), notified)
        found[read.standing.organization_id] = read
    return found


# The notices, and each organization's notified entitlement moved to its notice, in one
# statement. A notice that exists already (the same event noticed twice) changes nothing: no row
# returned for it.
RECORD_NOTICES_SQL = """
WITH new_notice AS (
    INSERT INTO entitlement_notices
        (job_id, organization_id, event_id, entitled, reason, until, decided_at)
    SELECT * FROM unnest(
        $1::text[], $2::uuid[], $3::text[], $4::boolean[], $5::text[], $6::timestamptz[],
        $7::timestamptz[]
    )
    ON CONFLICT DO NOTHING
    RETURNING organization_id, entitled, reason, until, job_id, decided_at
)
INSERT INTO notified_entitlements (organization_id, entitled, reason, until, job_id, decided_at)
SELECT organization_id, entitled, reason, until, job_id, decided_at FROM new_notice
ON CONFLICT (organization_id) DO UPDATE SET
    entitled = excluded.entitled, reason = excluded.reason, until = excluded.until,
    job_id = excluded.job_id, decided_at = excluded.decided_at
RETURNING job_id
"""


@dataclass(frozen=True, slots=True)
class NoticeRow:
    job_id: str
    organization_id: uuid.UUID
    event_id: str | None
    entitlement: Entitlement
    decided_at: datetime


async def record_notices(connection: Driver, notices: Sequence[NoticeRow]) -> set[str]:
    """The job ids of the notices recorded: not those whose job id or (event, organization)
    exists already. At most one notice per organization."""
    if not notices:
        return set()
    columns = (
        [notice.job_id for notice in notices],
        [notice.organization_id for notice in notices],
        [notice.event_id for notice in notices],
        [notice.entitlement.entitled for notice in notices],
        [notice.entitlement.reason for notice in notices],
        [notice.entitlement.until for notice in notices],
        [notice.decided_at for notice in notices],
    )
    return {row[0] for row in await connection.fetch(RECORD_NOTICES_SQL, *columns)}


MARK_ENQUEUED = DriverStatement(
    update(_notices)
    .where(_notices.c.job_id == any_(bindparam("job_ids")), _notices.c.enqueued_at.is_(None))
    .values(enqueued_at=func.now())
)


async def mark_enqueued(connection: Driver, job_ids: Sequence[str]) -> None:
    await MARK_ENQUEUED.execute(connection, {"job_ids": list(job_ids)})


UNENQUEUED = DriverStatement(
    select(_notices)
    .where(_notices.c.enqueued_at.is_(None), _notices.c.created_at < bindparam("before"))
    .order_by(_notices.c.created_at, _notices.c.job_id)
    .limit(bindparam("limit"))
)


async def unenqueued_notices(
    connection: Driver, *, before: datetime, limit: int
) -> list[NoticeRow]:
    """The oldest notices whose job was never marked added, made before `before`."""
    rows = await UNENQUEUED.fetch(connection, {"before": before, "limit": limit})
    return [
        NoticeRow(
            job_id=row["job_id"],
            organization_id=row["organization_id"],
            event_id=row["event_id"],
            entitlement=Entitlement(row["entitled"], row["reason"], row["until"]),
            decided_at=row["decided_at"],
        )
        for row in rows
    ]


GRACE_ENDED = DriverStatement(
    select(_notified.c.organization_id)
    # A constant, not a parameter: the partial index is on this reason.
    .where(
        _notified.c.reason == literal_column("'past_due_grace'"),
        _notified.c.until <= bindparam("now"),
    )
    .order_by(_notified.c.until)
    .limit(bindparam("limit"))
)


async def grace_ended_organizations(
    connection: Driver, *, now: datetime, limit: int
) -> list[uuid.UUID]:
    """Organizations last told they were entitled in a grace period that has ended by `now`."""
    rows = await GRACE_ENDED.fetch(connection, {"now": now, "limit": limit})
    return [row["organization_id"] for row in rows]


# `enqueued_at < before` is never true of NULL: a notice whose job was never marked added (the
# sweep may still have to add it) is kept however old.
_PRUNABLE = (
    select(_notices.c.job_id)
    .where(_notices.c.enqueued_at < bindparam("before"))
    .limit(bindparam("limit"))
    .scalar_subquery()
)
_PRUNED = delete(_notices).where(_notices.c.job_id.in_(_PRUNABLE)).returning(_notices.c.job_id)
PRUNE_ENQUEUED = DriverStatement(select(func.count()).select_from(_PRUNED.cte("pruned")))


async def prune_enqueued(connection: Driver, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` notices whose job was marked added before `before`; how many."""
    return int(await PRUNE_ENQUEUED.fetchval(connection, {"before": before, "limit": limit}))
