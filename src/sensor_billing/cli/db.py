"""`sensor-billing db ...`: apply, undo and show migrations."""

from __future__ import annotations

import typer

from sensor_billing.cli.errors import reports_errors
from sensor_billing.cli.output import stdout_console
from sensor_billing.db import migrate
from sensor_billing.db.health import require_database
from sensor_billing.settings import get_settings

app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
console = stdout_console()


@app.command()
@reports_errors
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    url = get_settings().database_url
    require_database(url)
    migrate.upgrade(url, revision)
    console.print(f"database at revision {migrate.current_revision(url)}")


@app.command()
@reports_errors
def downgrade(revision: str = typer.Argument(..., help="Target revision, or 'base'.")) -> None:
    """Undo migrations down to REVISION ('base' removes every table)."""
    url = get_settings().database_url
    require_database(url)
    migrate.downgrade(url, revision)
    console.print(f"database at revision {migrate.current_revision(url) or 'base (empty)'}")


@app.command()
@reports_errors
def current() -> None:
    """Print the database's revision and whether it is the newest."""
    url = get_settings().database_url
    require_database(url)
    revision = migrate.current_revision(url)
    head = migrate.heads(url)
    state = "up to date" if revision in head else f"behind (newest is {', '.join(head)})"
    console.print(f"{revision or 'base (empty)'}: {state}")
