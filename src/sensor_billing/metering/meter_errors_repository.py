"""SQL for Stripe's meter error verdicts. Nothing here commits: the caller's unit of work does."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from sensor_billing.db.schema import MeterErrorReport, MeterReport


async def reports_named(
    session: AsyncSession, identifiers: Iterable[str]
) -> list[tuple[int, uuid.UUID]]:
    """(id, organization) of the ledger rows with these identifiers, locked until commit so a
    concurrent verdict on the same rows waits (the watermark below then orders them)."""
    rows = await session.execute(
        select(MeterReport.id, MeterReport.organization_id)
        .where(MeterReport.identifier.in_(list(identifiers)))
        .order_by(MeterReport.id)
        .with_for_update()
    )
    return [(report_id, organization_id) for report_id, organization_id in rows]


async def mark_stripe_error(
    session: AsyncSession,
    report_ids: list[int],
    *,
    code: str,
    message: str | None,
    at: datetime,
    event_id: str,
) -> int:
    """Set the rows' Stripe error unless a newer event already set it; return how many changed.

    Stripe does not order events (docs: webhooks): `at` is the event's `created`, and an older
    event never overwrites a newer one's verdict. Same-second events apply in arrival order.
    """
    result = await session.execute(
        update(MeterReport)
        .where(
            MeterReport.id.in_(report_ids),
            or_(MeterReport.stripe_error_at.is_(None), MeterReport.stripe_error_at <= at),
        )
        .values(
            stripe_error_code=code,
            stripe_error_message=message,
            stripe_error_at=at,
            stripe_error_event_id=event_id,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def add_error_reports(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(MeterErrorReport), rows)


async def rows_with_stripe_error(connection: AsyncConnection | AsyncSession) -> dict[str, int]:
    """Ledger rows carrying a Stripe error, per code (through `meter_reports_stripe_error_idx`)."""
    rows = await connection.execute(
        select(MeterReport.stripe_error_code, func.count())
        .where(MeterReport.stripe_error_code.is_not(None))
        .group_by(MeterReport.stripe_error_code)
    )
    return {str(code): int(count) for code, count in rows}


async def recent_error_reports(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID | None,
    since: datetime | None,
    limit: int,
) -> list[MeterErrorReport]:
    """What Stripe's meter error events said, newest first; with an organization, only its
    rows (errors Stripe did not sample have none and are then left out)."""
    query = select(MeterErrorReport)
    if organization_id is not None:
        query = query.where(MeterErrorReport.organization_id == organization_id)
    if since is not None:
        query = query.where(MeterErrorReport.event_created_at >= since)
    query = query.order_by(MeterErrorReport.event_created_at.desc(), MeterErrorReport.id.desc())
    return list((await session.scalars(query.limit(limit))).all())
