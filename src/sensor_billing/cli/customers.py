"""`sensor-billing customers ...`: Stripe customers for organizations."""

from __future__ import annotations

import asyncio
import json

import typer

from sensor_billing.billing.customers import CustomerSyncSummary, sync_customers
from sensor_billing.cli.errors import reports_errors
from sensor_billing.cli.output import stdout_console
from sensor_billing.db import create_engine, create_session_factory
from sensor_billing.db.health import require_database
from sensor_billing.settings import get_settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client

app = typer.Typer(help="Stripe customers for organizations.", no_args_is_help=True)
console = stdout_console()


@app.command()
@reports_errors
def sync(as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Create a Stripe customer for every organization that has none, and store its id."""
    settings = get_settings()
    require_database(settings.database_url)

    async def run() -> CustomerSyncSummary:
        http = create_http_client()
        engine = create_engine(settings.database_url, pool_size=1, max_overflow=0)
        try:
            client = create_stripe_client(settings, http_client=http)
            return await sync_customers(create_session_factory(engine), client)
        finally:
            await engine.dispose()
            await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in the SDK

    summary = asyncio.run(run())
    if as_json:
        console.print_json(json.dumps(summary.to_json()))
        return
    for created in summary.created:
        console.print(
            f"{created.organization_id} ({created.name}): {created.customer_id}", highlight=False
        )
    console.print(
        f"created {len(summary.created)} customer(s)"
        if summary.created
        else "nothing to do: every organization has a Stripe customer"
    )
