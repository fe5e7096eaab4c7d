"""SQL for re-sending rows Stripe did not bill (metering/resend.py). Nothing here commits.

Rows that bill nothing: `failed`, and `sent` with a Stripe error that no re-send replaced yet.
Both are few (`meter_reports_failed_idx`, `meter_reports_stripe_error_idx`).
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.db.schema import MeterReport, Organization, ReportStatus

# The organization's live Stripe customer now (None when it has none, or Stripe deleted it).
_LIVE_CUSTOMER = (
    select(Organization.stripe_customer_id)
    .where(
        Organization.id == MeterReport.organization_id,
        Organization.stripe_customer_deleted_at.is_(None),
    )
    .scalar_subquery()
)

_FAILED: ColumnElement[bool] = MeterReport.status == ReportStatus.FAILED
_INVALID: ColumnElement[bool] = and_(
    MeterReport.status == ReportStatus.SENT,
    MeterReport.stripe_error_code.is_not(None),
    MeterReport.replaced_by_id.is_(None),
)


def bills_nothing(report: MeterReport) -> bool:
    """`failed`, or `sent` but reported invalid by Stripe and not re-sent yet."""
    if report.status == ReportStatus.FAILED:
        return True
    return (
        report.status == ReportStatus.SENT
        and report.stripe_error_code is not None
        and report.replaced_by_id is None
    )


async def report_for_resend(
    session: AsyncSession, row: str
) -> tuple[MeterReport, str | None] | None:
    """One row by id (digits) or identifier, locked, with its organization's live customer."""
    key = (
        MeterReport.id == int(row)
        if row.isdigit() and int(row) < 2**63
        else MeterReport.identifier == row
    )
    found = (
        await session.execute(
            select(MeterReport, _LIVE_CUSTOMER)
            .where(key)
            .with_for_update(of=MeterReport)
            .execution_options(populate_existing=True)
        )
    ).first()
    return (found[0], found[1]) if found else None


async def reports_billing_nothing(
    session: AsyncSession, *, organization_id: uuid.UUID | None, code: str | None
) -> list[tuple[MeterReport, str | None]]:
    """Every row billing nothing of the organization and/or with the code (Stripe's code of a
    refused call for failed rows, of its meter error report for invalid ones), oldest window
    first, locked, each with its organization's live customer."""
    failed: ColumnElement[bool] = _FAILED
    invalid: ColumnElement[bool] = _INVALID
    if code is not None:
        failed = and_(failed, MeterReport.last_error_code == code)
        invalid = and_(invalid, MeterReport.stripe_error_code == code)
    query = select(MeterReport, _LIVE_CUSTOMER).where(or_(failed, invalid))
    if organization_id is not None:
        query = query.where(MeterReport.organization_id == organization_id)
    rows = await session.execute(
        query.order_by(MeterReport.window_start, MeterReport.id)
        .with_for_update(of=MeterReport)
        .execution_options(populate_existing=True)
    )
    return [(report, customer) for report, customer in rows]


async def correction_count(session: AsyncSession, window_row_id: int) -> int:
    """How many corrections (and re-sends) a window's row has: the next one's number."""
    value = await session.scalar(
        select(func.count())
        .select_from(MeterReport)
        .where(MeterReport.corrects_id == window_row_id)
    )
    return int(value or 0)


async def codes_billing_nothing(session: AsyncSession) -> dict[str, int]:
    """Error codes of the rows billing nothing, with how many rows each (/ops failures)."""
    code = case(
        (MeterReport.status == ReportStatus.FAILED, MeterReport.last_error_code),
        else_=MeterReport.stripe_error_code,
    )
    rows = await session.execute(
        select(code, func.count())
        .where(or_(_FAILED, _INVALID), code.is_not(None))
        .group_by(code)
        .order_by(func.count().desc(), code)
    )
    return {str(name): int(count) for name, count in rows}
