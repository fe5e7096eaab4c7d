"""SQL for entitlement notices (`billing/entitlement_notices.py`): the outbox of the
`billing-events` queue and the entitlement each organization was last told of. Statements run
on the driver (`db.driver`), in the caller's transaction; nothing here commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import any_, bindparam, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert

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
    .where(Organization.id == literal_column("$1::uuid"))
)


@dataclass(frozen=True, slots=True)
class StandingAndNotified:
    standing: OrganizationStanding
    # None when the organization was never notified.
    notified: Entitlement | None


async def standing_and_notified(
    connection: Driver, organization_id: uuid.UUID
) -> StandingAndNotified | None:
    """One statement. Run it after locking the organization's row: it then reads what the
    transaction that held the lock committed (a statement's snapshot starts with it)."""
    row = await connection.fetchrow(STANDING_AND_NOTIFIED_SQL, organization_id)
    if row is None:
        return None
    *standing, entitled, reason, until = tuple(row.values())
    notified = None if entitled is None else Entitlement(entitled, reason, until)
    return StandingAndNotified(standing_from_row(standing), notified)


# The notice, and the organization's notified entitlement moved to it, in one statement. A
# notice that exists already (the same event noticed twice) changes nothing: no row returned.
_NOTIFIED_COLUMNS = ("organization_id", "entitled", "reason", "until", "job_id", "decided_at")
_new_notice = (
    insert(_notices)
    .values(
        job_id=bindparam("job_id"),
        organization_id=bindparam("organization_id"),
        event_id=bindparam("event_id"),
        entitled=bindparam("entitled"),
        reason=bindparam("reason"),
        until=bindparam("until"),
        decided_at=bindparam("decided_at"),
    )
    .on_conflict_do_nothing()
    .returning(*(_notices.c[name] for name in _NOTIFIED_COLUMNS))
    .cte("new_notice")
)
_moved = insert(_notified).from_select(
    list(_NOTIFIED_COLUMNS), select(*(_new_notice.c[name] for name in _NOTIFIED_COLUMNS))
)
RECORD_NOTICE = DriverStatement(
    _moved.on_conflict_do_update(
        index_elements=[_notified.c.organization_id],
        set_={name: _moved.excluded[name] for name in _NOTIFIED_COLUMNS[1:]},
    ).returning(_notified.c.job_id)
)


@dataclass(frozen=True, slots=True)
class NoticeRow:
    job_id: str
    organization_id: uuid.UUID
    event_id: str | None
    entitlement: Entitlement
    decided_at: datetime


async def record_notice(connection: Driver, notice: NoticeRow) -> bool:
    """False when a notice with its job id or its (event, organization) exists already."""
    job_id = await RECORD_NOTICE.fetchval(
        connection,
        {
            "job_id": notice.job_id,
            "organization_id": notice.organization_id,
            "event_id": notice.event_id,
            "entitled": notice.entitlement.entitled,
            "reason": notice.entitlement.reason,
            "until": notice.entitlement.until,
            "decided_at": notice.decided_at,
        },
    )
    return job_id is not None


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
