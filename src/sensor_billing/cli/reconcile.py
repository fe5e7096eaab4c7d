"""`sensor-billing reconcile` and `sensor-billing usage correct`: the ledger against Stripe."""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import stripe
import typer
from redis.asyncio import Redis
from rich.table import Table

from sensor_billing.cli.errors import EXIT_FAILURE, reports_errors
from sensor_billing.cli.jobs import require_redis
from sensor_billing.cli.output import stdout_console
from sensor_billing.cli.usage import (
    parse_date_option,
    parse_organization_option,
    require_organization,
)
from sensor_billing.db import SessionFactory, create_engine, create_session_factory, unit_of_work
from sensor_billing.db.health import require_database
from sensor_billing.errors import InvalidInputError
from sensor_billing.jobs.connection import open_queue
from sensor_billing.jobs.registry import METER_REPORT_JOB_OPTIONS, QueueNames
from sensor_billing.metering.corrections import (
    CorrectionKind,
    CorrectionRequest,
    CorrectionResult,
    correct_usage,
)
from sensor_billing.metering.outbox import job_for
from sensor_billing.metering.reconcile import Reconciliation, check_period, reconcile_period
from sensor_billing.settings import Settings, get_settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client
from sensor_billing.stripe_api.meters import (
    cancel_meter_event,
)
from sensor_billing.stripe_api.rate_limit import AccountRateLimiter

console = stdout_console()


@dataclass(frozen=True, slots=True)
class StripeAccess:
    client: stripe.StripeClient
    limiter: AccountRateLimiter
    sessions: SessionFactory


@asynccontextmanager
async def stripe_access(settings: Settings) -> AsyncIterator[StripeAccess]:
    """A database session factory, a Stripe client and the account-wide limiter the workers
    share (every call here counts against the same budget), all closed afterwards."""
    engine = create_engine(settings.database_url, pool_size=1)
    redis = Redis.from_url(settings.redis_url)
    http = create_http_client()
    try:
        yield StripeAccess(
            create_stripe_client(settings, http_client=http),
            AccountRateLimiter(redis, settings.meter_rate_limit_per_second),
            create_session_factory(engine),
        )
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]
        await redis.aclose()
        await engine.dispose()


def parse_period(text: str) -> tuple[datetime, datetime]:
    """`START..END`: each a UTC day (END included: `2026-11-01..2026-11-30` is November) or an
    ISO 8601 time (END excluded)."""
    start_text, separator, end_text = text.partition("..")
    if not separator or not start_text.strip() or not end_text.strip():
        raise InvalidInputError(
            f"--period {text!r} is not START..END (e.g. 2026-11-01..2026-11-30 or "
            "2026-11-27T00:00:00Z..2026-11-27T12:00:00Z)"
        )
    start = parse_date_option(start_text, "--period start")
    end = parse_date_option(end_text, "--period end", end_of_day=True)
    period = check_period(start, end)
    return period.start, period.end


@reports_errors
def reconcile(
    period: str = typer.Option(..., help="START..END: UTC days (END included) or ISO times."),
    org: str | None = typer.Option(None, help="Only this organization id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Compare the ledger's sent usage with Stripe's meter event summaries, hour by hour.

    Exit 1 when any hour (or a sum over the period) differs; hours with unsent (pending) rows
    are listed apart and do not count as drift.
    """
    start, end = parse_period(period)
    organization_id = parse_organization_option(org)
    settings = get_settings()
    require_database(settings.database_url)
    require_redis()

    async def run() -> Reconciliation:
        async with stripe_access(settings) as access:
            async with unit_of_work(access.sessions) as session:
                await require_organization(session, organization_id)
            return await reconcile_period(
                access.sessions,
                access.client,
                access.limiter.acquire,
                configured_meter_ids=settings.configured_meter_ids,
                period=check_period(start, end),
                organization_id=organization_id,
            )

    result = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(reconciliation_json(result), indent=2))
    else:
        print_reconciliation(result)
    if result.has_drift:
        raise typer.Exit(EXIT_FAILURE)


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def reconciliation_json(result: Reconciliation) -> dict[str, object]:
    return {
        "period": {"start": result.period.start.isoformat(), "end": result.period.end.isoformat()},
        "drift": result.has_drift,
        "meters": [
            {
                "organizationId": str(meter.organization_id),
                "customer": meter.customer,
                "eventName": meter.event_name,
                "formula": meter.formula,
                "ledger": _number(meter.ledger),
                "stripe": _number(meter.stripe),
                "drift": _number(meter.drift),
                "windowsCompared": meter.windows_compared,
                "windowsWithDrift": len(meter.drifts),
                "windowsUnsent": len(meter.unsent),
            }
            for meter in result.meters
        ],
        "windows": [
            {
                "organizationId": str(drift.organization_id),
                "customer": drift.customer,
                "eventName": drift.event_name,
                "windowStart": drift.start.isoformat(),
                "windowEnd": drift.end.isoformat(),
                "ledger": _number(drift.ledger),
                "stripe": _number(drift.stripe),
                "drift": _number(drift.drift),
            }
            for drift in result.drifts
        ],
        "unsent": [
            {
                "organizationId": str(window.organization_id),
                "eventName": window.event_name,
                "windowStart": window.start.isoformat(),
                "pendingRows": window.pending_rows,
                "pendingValue": window.pending_value,
            }
            for window in result.unsent
        ],
    }


def print_reconciliation(result: Reconciliation) -> None:
    table = Table(
        "organization",
        "customer",
        "meter",
        "ledger",
        "stripe",
        "drift",
        "hours drifting",
        "hours unsent",
        title=f"{result.period.start.isoformat()} .. {result.period.end.isoformat()}",
    )
    for meter in result.meters:
        style = "red" if meter.has_drift else None
        table.add_row(
            str(meter.organization_id),
            meter.customer,
            f"{meter.event_name} ({meter.formula})",
            str(_number(meter.ledger)),
            str(_number(meter.stripe)),
            str(_number(meter.drift)),
            str(len(meter.drifts)),
            str(len(meter.unsent)),
            style=style,
        )
    console.print(table)
    if result.drifts:
        drifts = Table("organization", "meter", "hour", "ledger", "stripe", "drift", title="drift")
        for drift in result.drifts:
            drifts.add_row(
                str(drift.organization_id),
                drift.event_name,
                drift.start.isoformat(timespec="minutes"),
                str(_number(drift.ledger)),
                str(_number(drift.stripe)),
                str(_number(drift.drift)),
            )
        console.print(drifts)
    if result.unsent:
        console.print(
            f"{len(result.unsent)} hour(s) hold unsent (pending) rows, not compared: "
            "the worker has not reported them yet"
        )
    console.print("drift found" if result.has_drift else "no drift", style="bold")


class MeterName(enum.StrEnum):
    ACTIVE_SENSORS = "active_sensors"
    TEMPERATURE_READINGS = "temperature_readings"


METER_OPTION = typer.Option(..., help="The meter (event name).")


@reports_errors
def correct(
    org: str = typer.Option(..., help="The organization id."),
    meter: MeterName = METER_OPTION,
    window: str = typer.Option(..., help="The window's start (ISO 8601, UTC)."),
    value: int = typer.Option(..., help="The window's true value."),
    reason: str | None = typer.Option(None, help="Why: kept in the ledger."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Correct a sent window: cancel and replace it within 24 h, else a compensating event.

    Running it again with the same value changes nothing. If Stripe refuses the cancel,
    nothing is written. The new row is sent by the worker like any pending row.
    """
    organization_id = parse_organization_option(org)
    assert organization_id is not None
    window_start = parse_date_option(window, "--window")
    settings = get_settings()
    require_database(settings.database_url)
    redis_url = require_redis()
    request = CorrectionRequest(organization_id, meter.value, window_start, value, reason)

    async def run() -> tuple[CorrectionResult, str | None]:
        async with stripe_access(settings) as access:

            async def cancel(event_name: str, identifier: str) -> None:
                await cancel_meter_event(
                    access.client,
                    access.limiter.acquire,
                    event_name=event_name,
                    identifier=identifier,
                )

            async with unit_of_work(access.sessions) as session:
                result = await correct_usage(
                    session,
                    request,
                    window=timedelta(seconds=settings.meter_window_seconds),
                    now=datetime.now(UTC),
                    cancel=cancel,
                )
        warning = None
        if result.pending is not None:
            # After the commit (outbox): a failure here only delays the send to the sweep.
            queue = open_queue(redis_url, QueueNames.METER_REPORTING)
            try:
                await queue.addBulk([job_for(result.pending, METER_REPORT_JOB_OPTIONS)])
            except Exception as error:
                warning = f"not enqueued ({error}); the worker's next sweep sends it"
            finally:
                await queue.close()
        return result, warning

    result, warning = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(correction_json(result), indent=2))
    else:
        console.print(describe_correction(result))
    if warning:
        console.print(warning, style="yellow")


def correction_json(result: CorrectionResult) -> dict[str, object]:
    return {
        "kind": result.kind.value,
        "original": result.original_identifier,
        "billedBefore": result.billed_before,
        "value": result.value,
        "identifier": result.identifier,
        "sentValue": result.sent_value,
        "cancelled": result.cancelled_identifier,
    }


def describe_correction(result: CorrectionResult) -> str:
    if result.kind is CorrectionKind.UNCHANGED:
        return f"{result.original_identifier} already bills {result.value}: nothing to do"
    if result.kind is CorrectionKind.REPLACEMENT:
        return (
            f"cancelled {result.cancelled_identifier} in Stripe; replacement "
            f"{result.identifier} ({result.billed_before} -> {result.value}) is pending"
        )
    if result.kind is CorrectionKind.COMPENSATION:
        return (
            f"{result.original_identifier} is past Stripe's 24 h cancel window: compensating "
            f"event {result.identifier} (value {result.sent_value}) is pending"
        )
    return (
        f"recorded {result.identifier} ({result.billed_before} -> {result.value}); a later "
        "window's value is what Stripe bills for this `last` meter, so nothing is sent"
    )
