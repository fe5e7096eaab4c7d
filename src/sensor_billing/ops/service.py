"""What each /ops page shows, read in the request's one unit of work (nothing is written, but
one snapshot keeps the numbers on a page consistent with each other).

Redis may be down while PostgreSQL answers (and the other way round is a 500 like any other
page): the queue parts of a page then say "unavailable" instead of failing the page.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.billing.duplicate_subscriptions import duplicate_subscriptions
from sensor_billing.billing.duplicates_repository import MeteredSubscription
from sensor_billing.billing.standing import (
    OrganizationBilling,
    organization_billing,
    organization_billings,
)
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import BillingStateChange, MeterReport, StripeSubscription
from sensor_billing.db.schema.metering import ReconcileOutcome, ReportStatus
from sensor_billing.errors import (
    InvalidInputError,
    OrganizationNotFoundError,
    ResendNotPossibleError,
)
from sensor_billing.jobs import admin
from sensor_billing.jobs.admin import FailedJob, RetryResult
from sensor_billing.jobs.connection import open_queue
from sensor_billing.jobs.registry import METER_EVENT_NAMES, QueueNames
from sensor_billing.metering import daily_checks_repository, resend_repository
from sensor_billing.metering import repository as metering_repository
from sensor_billing.metering.daily_checks_repository import RunSummary
from sensor_billing.metering.outbox import enqueue_reports
from sensor_billing.metering.repository import LedgerBacklog
from sensor_billing.metering.resend import ResendSelection, plan_resend, resend
from sensor_billing.observability.metrics import WEBHOOK_DELIVERIES
from sensor_billing.observability.repository import queue_depth
from sensor_billing.ops import repository
from sensor_billing.ops.charts import BarChart, bar_chart, bucket_size
from sensor_billing.ops.repository import (
    FailedReport,
    LoggedEvent,
    OrganizationSummary,
    ReportAttempts,
)
from sensor_billing.settings import Settings
from sensor_billing.webhooks.handlers import HANDLERS

logger = logging.getLogger("sensor_billing.ops")

RECENT: Final = timedelta(hours=24)
PAGE_SIZE: Final = 50
STATE_CHANGES_SHOWN: Final = 10
# Failed jobs listed per queue (bullmq keeps the last 1000 failed meter reports).
FAILED_JOBS_SHOWN: Final = 100
# Above this share of failed meter event calls, the overview turns red: Stripe answers nearly
# every call at once, so a few percent failing means an outage or a bad key.
ERROR_RATE_ALERT: Final = 0.05
# A pending row older than this many close intervals: the worker is down or far behind
# (docs/operations.md "What to alert on").
PENDING_ALERT_INTERVALS: Final = 3
REDIS_TIMEOUT_SECONDS: Final = 2.0
# The worker reconciles once a day: a newest run older than two days means it stopped.
RECONCILE_LATE: Final = timedelta(days=2)
HANDLED_TYPES: Final = frozenset(HANDLERS)

T = TypeVar("T")


async def _redis_or_none(what: str, query: Awaitable[T]) -> T | None:
    try:
        return await asyncio.wait_for(query, REDIS_TIMEOUT_SECONDS)
    except Exception as error:  # a page must show what PostgreSQL knows whatever Redis does
        logger.warning("ops: Redis did not answer for %s: %s", what, type(error).__name__)
        return None


K = TypeVar("K")
IdT = TypeVar("IdT")


def _page_key(
    text: str | None, parse_key: Callable[[str], K], parse_id: Callable[[str], IdT]
) -> tuple[K, IdT] | None:
    """A keyset pagination cursor `<sort key>|<id>` from a link; None (the first page) when
    absent or malformed."""
    if not text or "|" not in text:
        return None
    key, _, id_text = text.rpartition("|")
    try:
        return parse_key(key), parse_id(id_text)
    except ValueError:
        return None


# Ledger ids are bigint: a larger cursor (a hand-edited link) would fail the query (500).
MAX_ROW_ID = 2**63 - 1


def _row_id(text: str) -> int:
    row_id = int(text)
    if not 0 < row_id <= MAX_ROW_ID:
        raise ValueError(f"row id {row_id} is out of range")
    return row_id


async def _all_queue_depths(redis: Redis) -> dict[str, dict[str, int]]:
    return {queue.value: await queue_depth(redis, queue) for queue in QueueNames}


def process_webhook_counts() -> dict[str, int]:
    """This process's webhook deliveries by outcome since it started (Prometheus counter);
    rejected and failed deliveries leave no row in PostgreSQL, so only the counter knows."""
    counts: dict[str, int] = {}
    for metric in WEBHOOK_DELIVERIES.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                outcome = sample.labels["outcome"]
                counts[outcome] = counts.get(outcome, 0) + int(sample.value)
    return counts


@dataclass(slots=True)
class Overview:
    now: datetime
    webhook_outcomes: dict[str, int]
    process_webhooks: dict[str, int]
    report_statuses: dict[str, int]
    attempts: ReportAttempts
    queues: dict[str, dict[str, int]] | None  # None: Redis did not answer
    backlog: LedgerBacklog
    failed_reports: int
    # Meter events Stripe accepted, then reported invalid in the last 24 h, by error code.
    meter_errors: dict[str, int] = field(default_factory=dict)
    # The worker's newest daily reconcile of the previous UTC day (None before the first).
    reconciliation: RunSummary | None = None
    alerts: frozenset[str] = frozenset()  # the figures that need a person (shown red)

    @property
    def error_rate(self) -> float | None:
        """Share of meter event calls, for windows closed in the last 24 h, that Stripe did
        not accept (refused, unavailable, no answer); None before any call."""
        if not self.attempts.attempts:
            return None
        return self.attempts.failed_attempts / self.attempts.attempts

    @property
    def meter_error_count(self) -> int:
        return sum(self.meter_errors.values())

    @property
    def failed_jobs(self) -> int | None:
        if self.queues is None:
            return None
        return sum(states["failed"] for states in self.queues.values())


def _alerts(overview: Overview, settings: Settings) -> frozenset[str]:
    alerts = set()
    if overview.failed_reports:
        alerts.add("failed_reports")
    if overview.queues is None:
        alerts.add("redis")
    elif overview.failed_jobs:
        alerts.add("failed_jobs")
    rate = overview.error_rate
    if rate is not None and rate > ERROR_RATE_ALERT:
        alerts.add("error_rate")
    if overview.process_webhooks.get("failed"):
        alerts.add("webhooks_failed")
    if overview.meter_error_count:
        alerts.add("meter_errors")
    pending_limit = PENDING_ALERT_INTERVALS * settings.meter_close_interval_seconds
    if overview.backlog.oldest_pending_age_seconds > pending_limit:
        alerts.add("oldest_pending")
    run = overview.reconciliation
    if run is not None and (
        run.outcome != ReconcileOutcome.NO_DRIFT or overview.now - run.finished_at > RECONCILE_LATE
    ):
        alerts.add("reconcile")
    closed = overview.backlog.closed_through
    late = timedelta(seconds=2 * settings.meter_window_seconds + settings.meter_grace_seconds)
    if closed is not None and overview.now - closed > late:
        alerts.add("last_closed")
    return frozenset(alerts)


async def overview(session: AsyncSession, redis: Redis, settings: Settings) -> Overview:
    now = datetime.now(UTC)
    since = now - RECENT
    statuses, attempts = await repository.reports_since(session, since)
    page = Overview(
        now=now,
        webhook_outcomes=await repository.event_outcomes_since(session, since, HANDLED_TYPES),
        process_webhooks=process_webhook_counts(),
        report_statuses=statuses,
        attempts=attempts,
        queues=await _redis_or_none("queue depths", _all_queue_depths(redis)),
        backlog=await metering_repository.ledger_backlog(session),
        failed_reports=await repository.failed_report_count(session),
        meter_errors=await repository.meter_errors_since(session, since),
        reconciliation=await daily_checks_repository.latest_run(session),
    )
    page.alerts = _alerts(page, settings)
    return page


# -- organizations ---------------------------------------------------------------------------


def parse_organization_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise OrganizationNotFoundError(f"no organization {text!r}") from None


async def find_organization_id(session: AsyncSession, query: str) -> uuid.UUID:
    """An organization by its id or its Stripe customer id."""
    query = query.strip()
    if query.startswith("cus_"):
        found = await repository.find_organization_by_customer(session, query)
        if found is None:
            raise OrganizationNotFoundError(f"no organization has Stripe customer {query!r}")
        return found
    return parse_organization_id(query)


@dataclass(frozen=True, slots=True)
class OrganizationList:
    organizations: list[OrganizationSummary]
    next_after: str | None
    # Each listed organization's subscription and entitlement (billing/entitlement.py).
    billing: dict[uuid.UUID, OrganizationBilling] = field(default_factory=dict)


async def organization_list(
    session: AsyncSession, settings: Settings, after: str | None, *, now: datetime
) -> OrganizationList:
    rows = await repository.organizations_page(
        session, after=_page_key(after, str, uuid.UUID), limit=PAGE_SIZE + 1
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    billing = await organization_billings(
        session, [row.id for row in rows], now=now, grace=settings.past_due_grace
    )
    return OrganizationList(rows, f"{rows[-1].name}|{rows[-1].id}" if more else None, billing)


@dataclass(frozen=True, slots=True)
class MeterUsage:
    event_name: str
    chart: BarChart
    # Readings: the sum reported in the period. Active sensors: the last value reported.
    reported: int
    rows_by_status: dict[str, int]


@dataclass(frozen=True, slots=True)
class OrganizationPage:
    organization: OrganizationSummary
    subscription: StripeSubscription | None
    period_start: datetime
    period_end: datetime
    period_source: str
    bucket: timedelta
    meters: list[MeterUsage]
    ledger: list[MeterReport]
    ledger_status: str | None
    next_before: str | None
    changes: list[BillingStateChange] = field(default_factory=list)
    # The subscription that decides the entitlement (which may not be the one Stripe told about
    # last, `subscription`), and the entitlement.
    billing: OrganizationBilling | None = None
    # Two or more live subscriptions with metered prices: each bills the same usage.
    duplicate_subscriptions: list[MeteredSubscription] = field(default_factory=list)


def _month(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


LEDGER_STATUSES: Final = tuple(status.value for status in ReportStatus)


async def organization_page(
    session: AsyncSession,
    settings: Settings,
    organization_id: uuid.UUID,
    *,
    status: str | None,
    before: str | None,
    now: datetime,
) -> OrganizationPage:
    organization = await repository.find_organization(session, organization_id)
    if organization is None:
        raise OrganizationNotFoundError(f"no organization {organization_id}")
    billing = await organization_billing(
        session, organization_id, now=now, grace=settings.past_due_grace
    )
    subscription = None
    if organization.stripe_customer_id:
        subscription = await repository.latest_subscription(
            session, organization.stripe_customer_id
        )
    if subscription and subscription.current_period_start and subscription.current_period_end:
        start, end = subscription.current_period_start, subscription.current_period_end
        source = "the subscription's current period"
    else:
        start, end = _month(now)
        source = "this calendar month (no subscription period known)"
    window = timedelta(seconds=settings.meter_window_seconds)
    bucket = bucket_size(start, end, window)
    points = await repository.reported_usage(
        session, organization.id, start=start, end=end, bucket=bucket
    )
    statuses = await repository.period_status_counts(session, organization.id, start=start, end=end)
    meters = []
    for event_name in METER_EVENT_NAMES:
        mine = [point for point in points if point.event_name == event_name]
        if event_name == "active_sensors":
            reported = mine[-1].value if mine else 0
        else:
            reported = sum(point.value for point in mine)
        meters.append(
            MeterUsage(
                event_name=event_name,
                chart=bar_chart(event_name, mine, start=start, end=end, bucket=bucket),
                reported=reported,
                rows_by_status={
                    state: statuses.get((event_name, state), 0) for state in LEDGER_STATUSES
                },
            )
        )
    status = status if status in LEDGER_STATUSES else None
    rows = await repository.organization_ledger(
        session,
        organization.id,
        status=status,
        before=_page_key(before, datetime.fromisoformat, _row_id),
        limit=PAGE_SIZE + 1,
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    last = rows[-1] if rows else None
    return OrganizationPage(
        organization=organization,
        subscription=subscription,
        period_start=start,
        period_end=end,
        period_source=source,
        bucket=bucket,
        meters=meters,
        ledger=rows,
        ledger_status=status,
        next_before=f"{last.window_start.isoformat()}|{last.id}" if more and last else None,
        changes=await repository.state_changes(session, organization.id, STATE_CHANGES_SHOWN),
        billing=billing,
        duplicate_subscriptions=await duplicate_subscriptions(
            session, organization.stripe_customer_id
        ),
    )


# -- failures --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailuresPage:
    jobs: list[FailedJob] | None  # None: Redis did not answer
    reports: list[FailedReport]
    next_before: int | None
    # Sent rows Stripe reported invalid, not re-sent yet (they bill nothing either).
    invalid_reports: list[FailedReport] = field(default_factory=list)
    # Error codes of the rows billing nothing (failed, or invalid), with how many rows each.
    codes: dict[str, int] = field(default_factory=dict)


def _row_id_cursor(text: str | None) -> int | None:
    """A ledger row id from an "older" link; None (the first page) when absent, malformed or
    out of range, as for the other pages' cursors."""
    if text is None:
        return None
    try:
        return _row_id(text)
    except ValueError:
        return None


async def failures_page(
    session: AsyncSession, settings: Settings, before: str | None
) -> FailuresPage:
    jobs = await _redis_or_none(
        "failed jobs", admin.failed_jobs(settings.redis_url, FAILED_JOBS_SHOWN)
    )
    reports = await repository.failed_reports(
        session, before=_row_id_cursor(before), limit=PAGE_SIZE + 1
    )
    more = len(reports) > PAGE_SIZE
    reports = reports[:PAGE_SIZE]
    return FailuresPage(
        jobs,
        reports,
        reports[-1].report.id if more else None,
        invalid_reports=await repository.invalid_reports(session, limit=PAGE_SIZE),
        codes=await resend_repository.codes_billing_nothing(session),
    )


class ResendOutcome(enum.StrEnum):
    RESENT = "resent"
    NOTHING = "nothing"  # nothing billing nothing matched
    REFUSED = "refused"  # the row bills what it should, or every match was refused


@dataclass(frozen=True, slots=True)
class ResendResult:
    outcome: ResendOutcome
    resent: list[str] = field(default_factory=list)  # identifiers now pending
    refused: dict[str, str] = field(default_factory=dict)  # identifier -> why not
    message: str | None = None


async def resend_rows(
    sessions: SessionFactory, settings: Settings, selection: ResendSelection
) -> ResendResult:
    """What `sensor-billing usage resend --yes` does for one row or one error code: the rows
    back to pending (or re-sent as new rows) in one transaction, then their jobs. A second
    press finds nothing left to re-send and changes nothing."""
    now = datetime.now(UTC)
    try:
        async with unit_of_work(sessions) as session:
            plan = await plan_resend(session, selection, now=now)
            done, pending = await resend(session, plan, now=now)
    except (ResendNotPossibleError, InvalidInputError) as error:
        return ResendResult(ResendOutcome.REFUSED, message=str(error))
    refused = {c.report.identifier: c.refused or "" for c in plan.refused}
    if not plan.candidates:
        return ResendResult(ResendOutcome.NOTHING)
    if not done:
        return ResendResult(ResendOutcome.REFUSED, refused=refused)
    queue = open_queue(settings.redis_url, QueueNames.METER_REPORTING)
    try:
        await enqueue_reports(sessions, queue, pending, now=now)
    except Exception as error:  # committed: the worker's next sweep enqueues them
        logger.warning("ops: re-sent rows not enqueued (%s); the sweep will", error)
    finally:
        await queue.close()
    return ResendResult(
        ResendOutcome.RESENT,
        resent=[candidate.new_identifier or candidate.report.identifier for candidate in done],
        refused=refused,
    )


async def retry_failed_job(settings: Settings, job_id: str) -> RetryResult:
    """What `sensor-billing jobs retry JOB_ID` does: a failed job goes back to waiting with a
    fresh set of attempts; a job that is gone or not failed is left alone (so a second press
    changes nothing)."""
    return await admin.retry_job(settings.redis_url, job_id)


# -- webhooks --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookLog:
    events: list[LoggedEvent]
    event_type: str | None
    next_before: str | None
    known_types: list[str]


async def webhook_log(
    session: AsyncSession, event_type: str | None, before: str | None
) -> WebhookLog:
    event_type = (event_type or "").strip() or None
    # PostgreSQL text cannot hold U+0000 (the query would fail), so no recorded type has one.
    events = (
        []
        if event_type is not None and "\x00" in event_type
        else await repository.recent_events(
            session,
            event_type=event_type,
            before=_page_key(before, datetime.fromisoformat, uuid.UUID),
            handled_types=HANDLED_TYPES,
            limit=PAGE_SIZE + 1,
        )
    )
    more = len(events) > PAGE_SIZE
    events = events[:PAGE_SIZE]
    last = events[-1] if events else None
    return WebhookLog(
        events=events,
        event_type=event_type,
        next_before=f"{last.processed_at.isoformat()}|{last.id}" if more and last else None,
        known_types=sorted(HANDLED_TYPES),
    )
