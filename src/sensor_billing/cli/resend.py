"""`sensor-billing usage resend`: re-send usage Stripe did not bill, once its cause is fixed."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import typer
from rich.table import Table

from sensor_billing.cli.errors import EXIT_FAILURE, reports_errors
from sensor_billing.cli.jobs import require_redis
from sensor_billing.cli.output import stdout_console
from sensor_billing.cli.usage import parse_organization_option, require_organization
from sensor_billing.db import create_engine, create_session_factory, unit_of_work
from sensor_billing.db.health import require_database
from sensor_billing.errors import InvalidInputError
from sensor_billing.jobs.connection import open_queue
from sensor_billing.jobs.registry import QueueNames
from sensor_billing.metering.outbox import enqueue_reports
from sensor_billing.metering.resend import (
    ResendAction,
    ResendCandidate,
    ResendPlan,
    ResendSelection,
    plan_resend,
    resend,
)
from sensor_billing.settings import get_settings

console = stdout_console()


@reports_errors
def resend_command(
    row: str | None = typer.Option(None, "--row", help="One ledger row: its id or identifier."),
    org: str | None = typer.Option(None, help="Every such row of this organization id."),
    code: str | None = typer.Option(
        None, help="Every such row with this Stripe error code (of the refusal or meter error)."
    ),
    yes: bool = typer.Option(False, "--yes", help="Re-send; without it, only list what would be."),
    without_stripe_check: bool = typer.Option(
        False,
        "--without-stripe-check",
        help="Send a row pending for over a day without first asking Stripe's summaries "
        "whether it counts already (after checking by hand with reconcile).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Re-send rows Stripe did not bill: `failed` ones (same identifier, a new idempotency
    key) and sent ones Stripe reported invalid (a new row, `<identifier>.s<n>`).

    Without --yes nothing changes: the rows that would be re-sent are listed. Rows pending or
    sent without an error are never re-sent. The worker sends the rows; a row pending for
    more than a day is first checked against Stripe's summaries (unless
    --without-stripe-check).
    """
    if row is not None and (org is not None or code is not None):
        raise InvalidInputError("--row names one row: give it alone, or --org and/or --code")
    selection = ResendSelection(
        row=row,
        organization_id=parse_organization_option(org),
        code=code,
        without_stripe_check=without_stripe_check,
    )
    settings = get_settings()
    require_database(settings.database_url)
    redis_url = require_redis() if yes else None

    async def run() -> tuple[ResendPlan, list[ResendCandidate], str | None]:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            sessions = create_session_factory(engine)
            now = datetime.now(UTC)
            async with unit_of_work(sessions) as session:
                await require_organization(session, selection.organization_id)
                plan = await plan_resend(session, selection, now=now)
                if not yes:
                    return plan, [], None
                done, pending = await resend(session, plan, now=now)
            warning = None
            if pending:
                assert redis_url is not None
                # After the commit (outbox): a failure here only delays the send to the sweep.
                queue = open_queue(redis_url, QueueNames.METER_REPORTING)
                try:
                    await enqueue_reports(sessions, queue, pending, now=now)
                except Exception as error:
                    warning = f"not enqueued ({error}); the worker's next sweep sends them"
                finally:
                    await queue.close()
            return plan, done, warning
        finally:
            await engine.dispose()

    plan, done, warning = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(resend_json(plan, done, applied=yes), indent=2))
    else:
        print_resend(plan, done, applied=yes)
    if warning:
        console.print(warning, style="yellow")
    if not plan.candidates or (yes and not done):
        raise typer.Exit(EXIT_FAILURE)


def _candidate_json(candidate: ResendCandidate) -> dict[str, object]:
    report = candidate.report
    return {
        "id": report.id,
        "identifier": report.identifier,
        "organizationId": str(report.organization_id),
        "eventName": report.event_name,
        "windowStart": report.window_start.isoformat(),
        "value": report.value,
        "status": report.status,
        "code": report.last_error_code if report.status == "failed" else report.stripe_error_code,
        "action": candidate.action.value,
        "newIdentifier": candidate.new_identifier,
        "refused": candidate.refused,
    }


def resend_json(
    plan: ResendPlan, done: list[ResendCandidate], *, applied: bool
) -> dict[str, object]:
    return {
        "applied": applied,
        "resent": [_candidate_json(candidate) for candidate in done],
        "wouldResend": [] if applied else [_candidate_json(c) for c in plan.sendable],
        "refused": [_candidate_json(candidate) for candidate in plan.refused],
    }


def print_resend(plan: ResendPlan, done: list[ResendCandidate], *, applied: bool) -> None:
    if not plan.candidates:
        console.print(
            f"nothing to re-send: no failed row, and no row Stripe reported invalid, matches "
            f"{plan.selection.describe()}"
        )
        return
    shown = done if applied else plan.sendable
    if shown:
        table = Table(
            "row",
            "identifier",
            "meter",
            "window start",
            "value",
            "status",
            "code",
            "re-sent as",
            title="re-sent" if applied else "would re-send (run again with --yes)",
        )
        for candidate in shown:
            report = candidate.report
            table.add_row(
                str(report.id),
                report.identifier,
                report.event_name,
                report.window_start.isoformat(timespec="minutes"),
                str(report.value),
                "failed"
                if candidate.action is ResendAction.SAME_IDENTIFIER
                else "sent, reported invalid",
                str(_candidate_json(candidate)["code"] or ""),
                candidate.new_identifier
                or (
                    "the same identifier, a new idempotency key"
                    if candidate.action is ResendAction.SAME_IDENTIFIER
                    else f"{report.identifier}.s<n>, a new row"
                ),
            )
        console.print(table)
    for candidate in plan.refused:
        console.print(
            f"not re-sent: {candidate.report.identifier}: {candidate.refused}", style="yellow"
        )
    if applied:
        console.print(f"{len(done)} row(s) pending again; the worker sends them")
