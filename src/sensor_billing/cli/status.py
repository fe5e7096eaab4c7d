"""`sensor-billing status`: can the service reach what it needs, and how far behind is it?"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import typer

from sensor_billing.cli.errors import EXIT_UNAVAILABLE, reports_errors
from sensor_billing.cli.output import stdout_console
from sensor_billing.db import create_engine, migrate
from sensor_billing.db.health import database_problem
from sensor_billing.formatting import format_age
from sensor_billing.jobs import admin
from sensor_billing.jobs.health import redis_problem
from sensor_billing.metering import repository
from sensor_billing.metering.repository import LedgerBacklog
from sensor_billing.settings import get_settings

console = stdout_console()


async def ledger_progress(database_url: str) -> LedgerBacklog:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            return await repository.ledger_backlog(connection)
    finally:
        await engine.dispose()


@reports_errors
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Show PostgreSQL, migrations, Redis, queue depths and ledger progress; exit 3 if
    PostgreSQL or Redis does not answer."""
    settings = get_settings()
    now = datetime.now(UTC)
    report: dict[str, object] = {}
    lines: list[str] = []

    db_problem = database_problem(settings.database_url)
    progress: LedgerBacklog | None = None
    if db_problem:
        report["postgresql"] = {"ok": False, "problem": db_problem}
        lines.append(f"postgresql  [red]unavailable[/]: {db_problem}")
    else:
        revision = migrate.current_revision(settings.database_url)
        heads = migrate.heads(settings.database_url)
        up_to_date = revision in heads
        report["postgresql"] = {"ok": True, "revision": revision, "upToDate": up_to_date}
        state = "up to date" if up_to_date else "needs `sensor-billing db upgrade`"
        lines.append(f"postgresql  [green]ok[/]  revision {revision or 'none'} ({state})")
        if up_to_date:  # an older schema may not have the ledger tables yet
            progress = asyncio.run(ledger_progress(settings.database_url))

    queue_problem = redis_problem(settings.redis_url)
    counts: dict[str, dict[str, int]] | None = None
    if queue_problem:
        report["redis"] = {"ok": False, "problem": queue_problem}
        lines.append(f"redis       [red]unavailable[/]: {queue_problem}")
    else:
        report["redis"] = {"ok": True}
        lines.append("redis       [green]ok[/]")
        counts = asyncio.run(admin.job_counts(settings.redis_url))
        for queue, per_state in counts.items():
            depth = ", ".join(
                f"{per_state[state]} {state}"
                for state in ("waiting", "active", "delayed", "failed")
            )
            lines.append(f"queue       {queue}: {depth}")
    report["queues"] = counts

    if progress is not None:
        oldest = progress.oldest_pending_at
        closed = progress.closed_through
        report["ledger"] = {
            "oldestPendingAt": oldest.isoformat() if oldest else None,
            "oldestPendingAgeSeconds": int((now - oldest).total_seconds()) if oldest else None,
            "closedThrough": closed.isoformat() if closed else None,
        }
        lines.append(
            "ledger      oldest pending: "
            + (
                f"{format_age((now - oldest).total_seconds())} old"
                f" ({oldest.isoformat(timespec='seconds')})"
                if oldest
                else "none"
            )
        )
        lines.append(
            "ledger      last closed window ends "
            + (closed.isoformat(timespec="seconds") if closed else "never (nothing closed yet)")
        )
    else:
        report["ledger"] = None

    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        for line in lines:
            console.print(line, highlight=False)
    if db_problem or queue_problem:
        raise typer.Exit(EXIT_UNAVAILABLE)
