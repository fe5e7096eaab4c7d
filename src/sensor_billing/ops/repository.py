"""SQL behind the /ops pages. Read-only; every query is bounded by an index and a LIMIT, so a
page costs the same on a ledger of a thousand rows or of millions (benchmarks/ops_pages.py).

Indexes these queries lean on (migration `add_ops_indexes` adds the four after the first,
`add_error_and_webhook_type_indexes` the last two):
  meter_reports (organization_id, window_start)         an organization's ledger and chart
  meter_reports (created_at)                            reports of windows closed in the last 24 h
  meter_reports (id) WHERE status = 'failed'            failed rows, newest first
  stripe_events (processed_at)                          the webhook log, last-24-h counts
  billing_state_changes (event_id)                      what an event changed
  meter_error_reports (event_created_at)                Stripe's meter errors of the last 24 h
  meter_reports (stripe_error_code) WHERE ... NOT NULL  rows Stripe reported invalid
  stripe_events (event_type, processed_at)              the webhook log filtered by type
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, true, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.db.schema import (
    BillingStateChange,
    MeterErrorReport,
    MeterReport,
    Organization,
    ReportStatus,
    StripeEvent,
    StripeSubscription,
)

# Webhook outcomes as the log and the overview name them. A failed delivery rolls back, so
# every recorded event was processed; what differs is whether it changed billing state.
OUTCOME_CHANGED = "changed state"
OUTCOME_UNCHANGED = "no change"
OUTCOME_NO_HANDLER = "no handler"


@dataclass(frozen=True, slots=True)
class ReportAttempts:
    """Meter event calls made for the ledger rows of windows closed in a period."""

    rows_attempted: int
    attempts: int  # calls made (each try counts once, answered or not)
    accepted: int  # rows Stripe accepted; each took exactly one successful call
    # Readings these rows bill by arrival: committed after their own window was closed.
    late_readings: int = 0

    @property
    def failed_attempts(self) -> int:
        return max(self.attempts - self.accepted, 0)


# Rows of windows closed since :since: how many per status, and the calls made for them.
REPORTS_SINCE = text("""
SELECT status, count(*) AS rows, coalesce(sum(attempts), 0) AS attempts,
       count(*) FILTER (WHERE attempts > 0) AS attempted,
       coalesce(sum(late_readings), 0) AS late_readings
  FROM meter_reports
 WHERE created_at >= :since
 GROUP BY status
""")


async def reports_since(
    session: AsyncSession, since: datetime
) -> tuple[dict[str, int], ReportAttempts]:
    by_status: dict[str, int] = {}
    attempts = attempted = accepted = late = 0
    for status, rows, calls, tried, late_readings in await session.execute(
        REPORTS_SINCE, {"since": since}
    ):
        by_status[status] = int(rows)
        attempts += int(calls)
        attempted += int(tried)
        late += int(late_readings)
        if status == ReportStatus.SENT:
            accepted = int(rows)
    return by_status, ReportAttempts(attempted, attempts, accepted, late)


async def failed_report_count(session: AsyncSession) -> int:
    value = await session.scalar(
        select(func.count()).select_from(MeterReport).where(MeterReport.status == "failed")
    )
    return int(value or 0)


async def meter_errors_since(session: AsyncSession, since: datetime) -> dict[str, int]:
    """Meter events Stripe reported invalid in error events it created since `since`, by
    error code, most first."""
    total = func.sum(MeterErrorReport.error_count)
    rows = await session.execute(
        select(MeterErrorReport.code, total)
        .where(MeterErrorReport.event_created_at >= since)
        .group_by(MeterErrorReport.code)
        .order_by(total.desc(), MeterErrorReport.code)
    )
    return {code: int(count) for code, count in rows}


# The outcome of each recorded event: whether its handler changed billing state.
EVENT_OUTCOMES_SINCE = text("""
SELECT CASE WHEN NOT (e.event_type = ANY(:handled)) THEN :no_handler
            WHEN EXISTS (SELECT 1 FROM billing_state_changes c WHERE c.event_id = e.event_id)
                 THEN :changed
            ELSE :unchanged END AS outcome,
       count(*)
  FROM stripe_events e
 WHERE e.processed_at >= :since
 GROUP BY 1
""")


async def event_outcomes_since(
    session: AsyncSession, since: datetime, handled_types: frozenset[str]
) -> dict[str, int]:
    rows = await session.execute(
        EVENT_OUTCOMES_SINCE,
        {
            "since": since,
            "handled": sorted(handled_types),
            "no_handler": OUTCOME_NO_HANDLER,
            "changed": OUTCOME_CHANGED,
            "unchanged": OUTCOME_UNCHANGED,
        },
    )
    return {str(outcome): int(count) for outcome, count in rows}


@dataclass(frozen=True, slots=True)
class OrganizationSummary:
    id: uuid.UUID
    name: str
    stripe_customer_id: str | None
    stripe_customer_deleted_at: datetime | None


async def find_organization(
    session: AsyncSession, organization_id: uuid.UUID
) -> OrganizationSummary | None:
    row = (
        await session.execute(
            select(
                Organization.id,
                Organization.name,
                Organization.stripe_customer_id,
                Organization.stripe_customer_deleted_at,
            ).where(Organization.id == organization_id)
        )
    ).first()
    return OrganizationSummary(*row) if row else None


async def find_organization_by_customer(
    session: AsyncSession, customer_id: str
) -> uuid.UUID | None:
    return await session.scalar(
        select(Organization.id).where(Organization.stripe_customer_id == customer_id)
    )


async def organizations_page(
    session: AsyncSession, *, after: tuple[str, uuid.UUID] | None, limit: int
) -> list[OrganizationSummary]:
    """Organizations by name (then id), after the key `after` (keyset)."""
    query = (
        select(
            Organization.id,
            Organization.name,
            Organization.stripe_customer_id,
            Organization.stripe_customer_deleted_at,
        )
        .order_by(Organization.name, Organization.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(Organization.name, Organization.id) > tuple_(*after))
    return [OrganizationSummary(*row) for row in await session.execute(query)]


async def latest_subscription(session: AsyncSession, customer_id: str) -> StripeSubscription | None:
    """The customer's subscription Stripe told us about last."""
    return await session.scalar(
        select(StripeSubscription)
        .where(StripeSubscription.stripe_customer_id == customer_id)
        .order_by(StripeSubscription.last_event_created.desc())
        .limit(1)
    )


async def state_changes(
    session: AsyncSession, organization_id: uuid.UUID, limit: int
) -> list[BillingStateChange]:
    return list(
        await session.scalars(
            select(BillingStateChange)
            .where(BillingStateChange.organization_id == organization_id)
            .order_by(BillingStateChange.id.desc())
            .limit(limit)
        )
    )


@dataclass(frozen=True, slots=True)
class UsagePoint:
    event_name: str
    bucket_start: datetime
    windows: int  # ledger rows Stripe accepted in the bucket
    value: int  # their sum (a counter) or the last one (a gauge)


# Reported (sent) usage of one organization in [start, end), per meter and bucket. A bucket is
# one window, or several when the period has more windows than a chart can show: counters add
# up, a gauge keeps its last value (the meters' aggregations, `sum` and `last`).
USAGE_BY_BUCKET = text("""
SELECT event_name,
       date_bin(make_interval(secs => :bucket_seconds), window_start, :start) AS bucket,
       count(*) AS windows,
       CASE WHEN event_name = 'active_sensors'
            THEN (array_agg(value ORDER BY window_start DESC))[1]
            ELSE sum(value) END AS value
  FROM meter_reports
 WHERE organization_id = :organization_id AND status = 'sent' AND replaced_by_id IS NULL
   AND window_start >= :start AND window_start < :end
 GROUP BY 1, 2
 ORDER BY 1, 2
""")


async def reported_usage(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    start: datetime,
    end: datetime,
    bucket: timedelta,
) -> list[UsagePoint]:
    rows = await session.execute(
        USAGE_BY_BUCKET,
        {
            "organization_id": organization_id,
            "start": start,
            "end": end,
            "bucket_seconds": int(bucket.total_seconds()),
        },
    )
    return [UsagePoint(name, at, int(windows), int(value)) for name, at, windows, value in rows]


# Ledger rows of one organization in [start, end), per meter and status.
PERIOD_STATUS_COUNTS = text("""
SELECT event_name, status, count(*)
  FROM meter_reports
 WHERE organization_id = :organization_id AND window_start >= :start AND window_start < :end
 GROUP BY 1, 2
""")


async def period_status_counts(
    session: AsyncSession, organization_id: uuid.UUID, *, start: datetime, end: datetime
) -> dict[tuple[str, str], int]:
    rows = await session.execute(
        PERIOD_STATUS_COUNTS, {"organization_id": organization_id, "start": start, "end": end}
    )
    return {(str(name), str(status)): int(count) for name, status, count in rows}


async def organization_ledger(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    status: str | None,
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[MeterReport]:
    """An organization's ledger rows, newest window first, before the key `before` (keyset)."""
    query = (
        select(MeterReport)
        .where(MeterReport.organization_id == organization_id)
        .order_by(MeterReport.window_start.desc(), MeterReport.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(MeterReport.status == status)
    if before is not None:
        # The first condition lets the scan start at `before` on (organization_id, window_start).
        query = query.where(
            MeterReport.window_start <= before[0],
            tuple_(MeterReport.window_start, MeterReport.id) < tuple_(*before),
        )
    return list(await session.scalars(query))


@dataclass(frozen=True, slots=True)
class FailedReport:
    report: MeterReport
    organization_name: str


async def failed_reports(
    session: AsyncSession, *, before: int | None, limit: int
) -> list[FailedReport]:
    """Failed ledger rows, newest row first, before the id `before` (keyset)."""
    query = (
        select(MeterReport, Organization.name)
        .join(Organization, Organization.id == MeterReport.organization_id)
        .where(MeterReport.status == ReportStatus.FAILED)
        .order_by(MeterReport.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(MeterReport.id < before)
    return [FailedReport(report, name) for report, name in await session.execute(query)]


async def invalid_reports(session: AsyncSession, *, limit: int) -> list[FailedReport]:
    """Sent rows Stripe reported invalid that no re-send replaced yet, newest first (few:
    `meter_reports_stripe_error_idx`)."""
    rows = await session.execute(
        select(MeterReport, Organization.name)
        .join(Organization, Organization.id == MeterReport.organization_id)
        .where(
            MeterReport.stripe_error_code.is_not(None),
            MeterReport.status == ReportStatus.SENT,
            MeterReport.replaced_by_id.is_(None),
        )
        .order_by(MeterReport.id.desc())
        .limit(limit)
    )
    return [FailedReport(report, name) for report, name in rows]


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    id: uuid.UUID
    event_id: str
    event_type: str
    processed_at: datetime
    outcome: str
    summary: str | None  # what it changed, when it changed something
    organization_id: uuid.UUID | None


async def recent_events(
    session: AsyncSession,
    *,
    event_type: str | None,
    before: tuple[datetime, uuid.UUID] | None,
    handled_types: frozenset[str],
    limit: int,
) -> list[LoggedEvent]:
    """Recorded events, most recently processed first, before the key `before` (keyset), each
    with the newest change it made (an event changes at most a couple of objects)."""
    change = (
        select(BillingStateChange.summary, BillingStateChange.organization_id)
        .where(BillingStateChange.event_id == StripeEvent.event_id)
        .order_by(BillingStateChange.id.desc())
        .limit(1)
        .lateral("change")
    )
    query = (
        select(
            StripeEvent.id,
            StripeEvent.event_id,
            StripeEvent.event_type,
            StripeEvent.processed_at,
            change.c.summary,
            change.c.organization_id,
        )
        .select_from(StripeEvent)
        .outerjoin(change, true())
        .order_by(StripeEvent.processed_at.desc(), StripeEvent.id.desc())
        .limit(limit)
    )
    if event_type is not None:
        query = query.where(StripeEvent.event_type == event_type)
    if before is not None:
        # The first condition lets the scan start at `before` on the processed_at index.
        query = query.where(
            StripeEvent.processed_at <= before[0],
            tuple_(StripeEvent.processed_at, StripeEvent.id) < tuple_(*before),
        )
    events = []
    for id_, event_id, type_, processed_at, summary, organization_id in await session.execute(
        query
    ):
        if summary is not None:
            outcome = OUTCOME_CHANGED
        elif type_ in handled_types:
            outcome = OUTCOME_UNCHANGED
        else:
            outcome = OUTCOME_NO_HANDLER
        events.append(
            LoggedEvent(id_, event_id, type_, processed_at, outcome, summary, organization_id)
        )
    return events
