"""`sensor-billing events ...`: the webhook idempotency store."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from sensor_billing.cli.errors import reports_errors
from sensor_billing.db import create_engine, create_session_factory
from sensor_billing.db.health import require_database
from sensor_billing.settings import get_settings
from sensor_billing.webhooks.retention import parse_age, prune_processed_events

app = typer.Typer(help="Recorded Stripe webhook events.", no_args_is_help=True)
console = Console()


@app.command()
@reports_errors
def prune(
    older_than: str = typer.Option("30d", help="Age like 30d, 72h; must exceed 3 days."),
) -> None:
    """Delete recorded events processed longer ago than --older-than."""
    age = parse_age(older_than)
    url = get_settings().database_url
    require_database(url)

    async def run() -> int:
        engine = create_engine(url, pool_size=1, max_overflow=0)
        try:
            return await prune_processed_events(create_session_factory(engine), age)
        finally:
            await engine.dispose()

    deleted = asyncio.run(run())
    console.print(f"pruned {deleted} event(s) processed more than {older_than} ago")
