"""`sensor-billing usage ...`: the usage ledger."""

from __future__ import annotations

import asyncio
import enum
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.cli.errors import reports_errors
from sensor_billing.cli.output import stdout_console
from sensor_billing.db import create_engine, create_session_factory, unit_of_work
from sensor_billing.db.health import require_database
from sensor_billing.db.schema import MeterErrorReport, MeterReport
from sensor_billing.errors import InvalidInputError
from sensor_billing.metering import meter_errors_repository, repository
from sensor_billing.metering.backfill import BackfillPlan, backfill_organization, plan_backfill
from sensor_billing.metering.service import ClosePolicy, CloseSummary, close_windows
from sensor_billing.settings import Settings, get_settings

app = typer.Typer(help="Usage windows and the ledger.", no_args_is_help=True)
console = stdout_console()

T = TypeVar("T")


@app.command()
@reports_errors
def close() -> None:
    """Close every window that has ended (plus the grace period) into the ledger.

    The rows are reported by the worker (`sensor-billing worker`), whose sweep enqueues them.
    """
    settings = get_settings()
    require_database(settings.database_url)
    policy = close_policy(settings)

    async def run() -> CloseSummary:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            async with unit_of_work(create_session_factory(engine)) as session:
                return await close_windows(session, policy, datetime.now(UTC))
        finally:
            await engine.dispose()

    summary = asyncio.run(run())
    rows = ", ".join(
        f"{count} {status}" for status, count in sorted(summary.rows_by_status.items())
    )
    console.print(
        f"closed windows through {summary.closed_through.isoformat()}: {rows or 'nothing new'}"
    )
    if summary.late_readings:
        console.print(
            f"{summary.late_readings} reading(s) whose transaction committed after their window "
            "closed, billed in a later window"
        )
    if summary.organizations_without_customer:
        console.print(
            "not metered, no Stripe customer: "
            + ", ".join(str(org) for org in summary.organizations_without_customer)
        )


def parse_date_option(text: str, option: str, *, end_of_day: bool = False) -> datetime:
    """'2026-11-01' (a UTC day; with `end_of_day`, the moment that day ends) or an ISO 8601
    time ('2026-11-01T06:00:00Z'; without an offset, UTC)."""
    try:
        if len(text.strip()) == 10:
            day = date.fromisoformat(text.strip())
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        parsed = datetime.fromisoformat(text.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except ValueError:
        raise InvalidInputError(
            f"{option} {text!r} is not a date like 2026-11-01 or 2026-11-01T06:00:00Z"
        ) from None
    except OverflowError:  # valid ISO 8601 that in UTC (or a day later) leaves years 1-9999
        raise InvalidInputError(
            f"{option} {text!r} is outside the years 1 to 9999 in UTC"
        ) from None


def parse_organization_option(text: str | None) -> uuid.UUID | None:
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidInputError(f"--org {text!r} is not an organization id (a UUID)") from None


async def require_organization(session: AsyncSession, organization_id: uuid.UUID | None) -> None:
    """`--org`, when given, must name an organization (else exit 2, nothing done)."""
    if organization_id is not None and (
        await repository.find_organization(session, organization_id) is None
    ):
        raise InvalidInputError(f"no organization with id {organization_id}")


def read_for_organization(
    settings: Settings,
    organization_id: uuid.UUID | None,
    read: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """Run one read in its own short-lived engine, once `--org` is known to exist."""

    async def run() -> T:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            async with unit_of_work(create_session_factory(engine)) as session:
                await require_organization(session, organization_id)
                return await read(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def close_policy(settings: Settings) -> ClosePolicy:
    return ClosePolicy(
        window=timedelta(seconds=settings.meter_window_seconds),
        grace=timedelta(seconds=settings.meter_grace_seconds),
        backfill_start=settings.meter_backfill_start,
    )


@app.command()
@reports_errors
def backfill(
    since: str = typer.Option(..., help="First day (UTC, 2026-11-01) or ISO 8601 time."),
    until: str | None = typer.Option(
        None, help="Last day, included (or an ISO 8601 time, excluded); default: now."
    ),
    org: str | None = typer.Option(None, help="Only this organization id."),
) -> None:
    """Re-measure missing windows in a range into the ledger (existing rows stay as they are).

    Windows older than Stripe's 35 days become `skipped` rows; the worker reports the rest.
    """
    now = datetime.now(UTC)
    start = parse_date_option(since, "--since")
    end = parse_date_option(until, "--until", end_of_day=True) if until else now
    organization_id = parse_organization_option(org)
    settings = get_settings()
    policy = close_policy(settings)
    require_database(settings.database_url)

    async def run() -> tuple[BackfillPlan, dict[str, int]]:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            sessions = create_session_factory(engine)
            async with unit_of_work(sessions) as session:
                plan = await plan_backfill(
                    session,
                    policy,
                    since=start,
                    until=end,
                    now=now,
                    organization_id=organization_id,
                )
            created: dict[str, int] = {}
            with Progress(
                TextColumn("backfilling windows"),
                BarColumn(),
                MofNCompleteColumn(),
                console=console,
                transient=False,
            ) as progress:
                task = progress.add_task("backfill", total=plan.missing_windows)
                for organization, missing in plan.missing_by_organization.items():
                    async with unit_of_work(sessions) as session:
                        counts = await backfill_organization(
                            session, policy, organization, start=plan.start, end=plan.end, now=now
                        )
                    for status, count in counts.items():
                        created[status] = created.get(status, 0) + count
                    progress.advance(task, missing)
            return plan, created
        finally:
            await engine.dispose()

    plan, created = asyncio.run(run())
    rows = ", ".join(f"{count} {status}" for status, count in sorted(created.items()))
    console.print(
        f"windows {plan.start.isoformat()} to {plan.end.isoformat()}: "
        f"{plan.missing_windows} missing in {len(plan.missing_by_organization)} "
        f"organization(s); rows created: {rows or 'none'}"
    )


class LedgerStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


STATUS_OPTION = typer.Option(None, help="Only rows in this status.")


def _ledger_json(report: MeterReport) -> dict[str, object]:
    return {
        "identifier": report.identifier,
        "organizationId": str(report.organization_id),
        "eventName": report.event_name,
        "windowStart": report.window_start.isoformat(),
        "windowEnd": report.window_end.isoformat(),
        "value": report.value,
        "lateReadings": report.late_readings,
        "status": report.status,
        "attempts": report.attempts,
        "lastError": report.last_error,
        "skipReason": report.skip_reason,
        "sentAt": report.sent_at.isoformat() if report.sent_at else None,
        "stripeErrorCode": report.stripe_error_code,
        "stripeErrorMessage": report.stripe_error_message,
        "stripeErrorAt": report.stripe_error_at.isoformat() if report.stripe_error_at else None,
    }


@app.command()
@reports_errors
def ledger(
    org: str | None = typer.Option(None, help="Only this organization id."),
    status: LedgerStatus | None = STATUS_OPTION,
    stripe_error: bool = typer.Option(
        False,
        "--stripe-error",
        help="Only rows Stripe reported invalid after accepting them (to re-send).",
    ),
    limit: int = typer.Option(50, min=1, max=10_000, help="Rows at most (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Ledger rows, newest window first: meter, value, status, attempts, error, sent time, and
    the error code Stripe reported later for a sent row (its usage did not count in Stripe)."""
    organization_id = parse_organization_option(org)
    settings = get_settings()
    require_database(settings.database_url)

    async def rows(session: AsyncSession) -> list[MeterReport]:
        return await repository.ledger_rows(
            session,
            organization_id=organization_id,
            status=status.value if status else None,
            stripe_error=stripe_error,
            limit=limit,
        )

    reports = read_for_organization(settings, organization_id, rows)
    if as_json:
        typer.echo(json.dumps([_ledger_json(report) for report in reports], indent=2))
        return
    if not reports:
        console.print("no ledger rows")
        return
    table = Table(
        "window start",
        "organization",
        "meter",
        "value",
        "status",
        "attempts",
        "error / skip reason",
        "sent at",
        "stripe error",
    )
    for report in reports:
        table.add_row(
            report.window_start.isoformat(timespec="minutes"),
            str(report.organization_id),
            report.event_name,
            str(report.value),
            report.status,
            str(report.attempts),
            report.last_error or report.skip_reason or "",
            report.sent_at.isoformat(timespec="seconds") if report.sent_at else "",
            report.stripe_error_code or "",
        )
    console.print(table)


def _error_report_json(report: MeterErrorReport) -> dict[str, object]:
    def moment(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "stripeEventId": report.stripe_event_id,
        "eventType": report.event_type,
        "code": report.code,
        "errorCount": report.error_count,
        "organizationId": str(report.organization_id) if report.organization_id else None,
        "meterId": report.meter_id,
        "sampleMessage": report.sample_message,
        "validationStart": moment(report.validation_start),
        "validationEnd": moment(report.validation_end),
        "eventCreatedAt": moment(report.event_created_at),
    }


@app.command()
@reports_errors
def errors(
    org: str | None = typer.Option(None, help="Only this organization id."),
    since: str | None = typer.Option(None, help="Only events Stripe created from this date."),
    limit: int = typer.Option(50, min=1, max=10_000, help="Rows at most (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """What Stripe's meter error events reported, newest first: code, how many events, the
    organization (none: errors Stripe did not name a ledger row for), the validation span."""
    organization_id = parse_organization_option(org)
    since_at = parse_date_option(since, "--since") if since is not None else None
    settings = get_settings()
    require_database(settings.database_url)

    async def rows(session: AsyncSession) -> list[MeterErrorReport]:
        return await meter_errors_repository.recent_error_reports(
            session, organization_id=organization_id, since=since_at, limit=limit
        )

    reports = read_for_organization(settings, organization_id, rows)
    if as_json:
        typer.echo(json.dumps([_error_report_json(report) for report in reports], indent=2))
        return
    if not reports:
        console.print("no meter errors reported by Stripe")
        return
    table = Table("created", "code", "errors", "organization", "validation span", "sample")
    for report in reports:
        span = ""
        if report.validation_start and report.validation_end:
            span = (
                f"{report.validation_start.isoformat(timespec='minutes')} .. "
                f"{report.validation_end.isoformat(timespec='minutes')}"
            )
        table.add_row(
            report.event_created_at.isoformat(timespec="seconds"),
            report.code,
            str(report.error_count),
            str(report.organization_id) if report.organization_id else "(not named)",
            span,
            report.sample_message or "",
        )
    console.print(table)
