"""`sensor-billing usage ...`: the usage ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console

from sensor_billing.cli.errors import reports_errors
from sensor_billing.db import create_engine, create_session_factory, unit_of_work
from sensor_billing.db.health import require_database
from sensor_billing.metering.service import ClosePolicy, CloseSummary, close_windows
from sensor_billing.settings import get_settings

app = typer.Typer(help="Usage windows and the ledger.", no_args_is_help=True)
console = Console()


@app.command()
@reports_errors
def close() -> None:
    """Close every window that has ended (plus the grace period) into the ledger.

    The rows are reported by the worker (`sensor-billing worker`), whose sweep enqueues them.
    """
    settings = get_settings()
    require_database(settings.database_url)
    policy = ClosePolicy(
        window=timedelta(seconds=settings.meter_window_seconds),
        grace=timedelta(seconds=settings.meter_grace_seconds),
        backfill_start=settings.meter_backfill_start,
    )

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
    if summary.organizations_without_customer:
        console.print(
            "not metered, no Stripe customer: "
            + ", ".join(str(org) for org in summary.organizations_without_customer)
        )
