"""SQL for ledger corrections and reconciliation. Nothing here commits.

Kept apart from `repository.py` (the closing and sending SQL) because corrections and
reconciliation read the ledger by window and by event time, not by status and age.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.db.schema import MeterReport, Organization, ReportSource, ReportStatus


async def window_report_for_update(
    session: AsyncSession, organization_id: uuid.UUID, event_name: str, window_start: datetime
) -> MeterReport | None:
    """The window's own row, locked: corrections of one window run one at a time."""
    return await session.scalar(
        select(MeterReport)
        .where(
            MeterReport.organization_id == organization_id,
            MeterReport.event_name == event_name,
            MeterReport.window_start == window_start,
            MeterReport.source == ReportSource.WINDOW,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def corrections_of(session: AsyncSession, report_id: int) -> list[MeterReport]:
    """Every correction of a row, oldest first, locked like the row itself."""
    return list(
        await session.scalars(
            select(MeterReport)
            .where(MeterReport.corrects_id == report_id)
            .order_by(MeterReport.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


async def has_later_report(session: AsyncSession, report: MeterReport) -> bool:
    """Whether the organization has a sent or pending report of this meter in a later
    window: for a `last` meter, that report's value is the one Stripe bills."""
    found = await session.scalar(
        select(MeterReport.id)
        .where(
            MeterReport.organization_id == report.organization_id,
            MeterReport.event_name == report.event_name,
            MeterReport.window_start > report.window_start,
            MeterReport.status.in_([ReportStatus.SENT, ReportStatus.PENDING]),
        )
        .limit(1)
    )
    return found is not None


def add_report(session: AsyncSession, report: MeterReport) -> None:
    session.add(report)


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """A ledger row as the meter event it is (or will be) in Stripe."""

    id: int
    organization_id: uuid.UUID
    customer: str
    event_name: str
    timestamp: datetime  # the event's timestamp: the window's last second
    value: int
    status: str


async def ledger_events(
    session: AsyncSession, *, start: datetime, end: datetime, organization_id: uuid.UUID | None
) -> list[LedgerEvent]:
    """Sent and pending rows whose event timestamp lies in [start, end). Rows withdrawn
    (cancelled), refused (failed), never sent (skipped) or re-sent as another row after
    Stripe reported them invalid are not in Stripe's sums."""
    last_second = MeterReport.window_end - timedelta(seconds=1)
    query = (
        select(
            MeterReport.id,
            MeterReport.organization_id,
            MeterReport.stripe_customer_id,
            MeterReport.event_name,
            last_second,
            MeterReport.value,
            MeterReport.status,
        )
        .where(
            MeterReport.status.in_([ReportStatus.SENT, ReportStatus.PENDING]),
            # A row Stripe reported invalid and `usage resend` re-sent: its re-send counts.
            MeterReport.replaced_by_id.is_(None),
            MeterReport.stripe_customer_id.is_not(None),
            last_second >= start,
            last_second < end,
        )
        .order_by(MeterReport.organization_id, MeterReport.event_name, last_second, MeterReport.id)
    )
    if organization_id is not None:
        query = query.where(MeterReport.organization_id == organization_id)
    return [
        LedgerEvent(id_, organization, str(customer), event_name, timestamp, value, status)
        for id_, organization, customer, event_name, timestamp, value, status in (
            await session.execute(query)
        )
    ]


async def metered_customers(
    session: AsyncSession, organization_id: uuid.UUID | None
) -> list[tuple[uuid.UUID, str]]:
    """(organization, Stripe customer) of every metered organization: Stripe may hold
    events for them that the ledger does not."""
    query = select(Organization.id, Organization.stripe_customer_id).where(
        Organization.stripe_customer_id.is_not(None),
        Organization.stripe_customer_deleted_at.is_(None),
    )
    if organization_id is not None:
        query = query.where(Organization.id == organization_id)
    return [(org, str(customer)) for org, customer in await session.execute(query)]
