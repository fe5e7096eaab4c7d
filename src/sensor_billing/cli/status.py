"""`sensor-billing status`: can the service reach what it needs?"""

from __future__ import annotations

import typer
from rich.console import Console

from sensor_billing.cli.errors import EXIT_UNAVAILABLE, reports_errors
from sensor_billing.db import migrate
from sensor_billing.db.health import database_problem
from sensor_billing.jobs.health import redis_problem
from sensor_billing.settings import get_settings

console = Console()


@reports_errors
def status() -> None:
    """Show PostgreSQL, the migration state and Redis; exit 3 if one does not answer."""
    settings = get_settings()
    failed = False
    db_problem = database_problem(settings.database_url)
    if db_problem:
        failed = True
        console.print(f"postgresql  [red]unavailable[/]: {db_problem}")
    else:
        revision = migrate.current_revision(settings.database_url)
        heads = migrate.heads(settings.database_url)
        state = "up to date" if revision in heads else "needs `sensor-billing db upgrade`"
        console.print(f"postgresql  [green]ok[/]  revision {revision or 'none'} ({state})")
    queue_problem = redis_problem(settings.redis_url)
    if queue_problem:
        failed = True
        console.print(f"redis       [red]unavailable[/]: {queue_problem}")
    else:
        console.print("redis       [green]ok[/]")
    if failed:
        raise typer.Exit(EXIT_UNAVAILABLE)
