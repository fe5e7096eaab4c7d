"""`sensor-billing events ...`: the webhook idempotency store."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.table import Table

from sensor_billing.billing.entitlement_notices import prune_enqueued_notices
from sensor_billing.cli.errors import reports_errors
from sensor_billing.cli.output import stdout_console
from sensor_billing.cli.usage import parse_date_option
from sensor_billing.db import create_engine, create_session_factory, unit_of_work
from sensor_billing.db.health import require_database
from sensor_billing.db.schema import StripeEvent
from sensor_billing.settings import get_settings
from sensor_billing.webhooks import repository
from sensor_billing.webhooks.retention import parse_age, prune_processed_events

app = typer.Typer(help="Recorded Stripe webhook events.", no_args_is_help=True)
console = stdout_console()


@app.command()
@reports_errors
def prune(
    older_than: str = typer.Option("30d", help="Age like 30d, 72h; must exceed 3 days."),
) -> None:
    """Delete recorded events processed, and entitlement notices whose job was added, longer
    ago than --older-than."""
    age = parse_age(older_than)
    url = get_settings().database_url
    require_database(url)

    async def run() -> tuple[int, int]:
        engine = create_engine(url, pool_size=1, max_overflow=0)
        try:
            events = await prune_processed_events(create_session_factory(engine), age)
            return events, await prune_enqueued_notices(engine, age)
        finally:
            await engine.dispose()

    events, notices = asyncio.run(run())
    console.print(f"pruned {events} event(s) processed more than {older_than} ago")
    console.print(
        f"pruned {notices} entitlement notice(s) whose job was added more than {older_than} ago"
    )


@app.command("list")
@reports_errors
def list_events(
    event_type: str | None = typer.Option(
        None, "--type", help="Only this event type, e.g. invoice.paid."
    ),
    since: str | None = typer.Option(
        None, help="Only events processed since this day (UTC) or ISO 8601 time."
    ),
    limit: int = typer.Option(50, min=1, max=10_000, help="Events at most (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Recorded webhook events, most recently processed first."""
    since_at = parse_date_option(since, "--since") if since else None
    url = get_settings().database_url
    require_database(url)

    async def run() -> list[StripeEvent]:
        engine = create_engine(url, pool_size=1, max_overflow=0)
        try:
            async with unit_of_work(create_session_factory(engine)) as session:
                return await repository.recent_events(
                    session, event_type=event_type, since=since_at, limit=limit
                )
        finally:
            await engine.dispose()

    events = asyncio.run(run())
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "eventId": event.event_id,
                        "type": event.event_type,
                        "processedAt": event.processed_at.isoformat(),
                    }
                    for event in events
                ],
                indent=2,
            )
        )
        return
    if not events:
        console.print("no recorded events")
        return
    table = Table("processed at", "event id", "type")
    for event in events:
        table.add_row(
            event.processed_at.isoformat(timespec="seconds"), event.event_id, event.event_type
        )
    console.print(table)
