"""`sensor-billing dev`: the service with embedded PostgreSQL, Redis and the Stripe stand-in."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from sensor_billing.cli.errors import reports_errors
from sensor_billing.cli.output import stdout_console
from sensor_billing.devtools.dev_mode import DevOptions, run_dev

console = stdout_console()


@reports_errors
def dev(
    ctx: typer.Context,
    port: int = typer.Option(8000, min=1, max=65535, help="API port."),
    host: str = typer.Option("127.0.0.1", help="Interface the API listens on."),
    demo: bool = typer.Option(False, "--demo", help="Demo organizations and live readings."),
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where embedded PostgreSQL and Redis keep data (reused; default: "
            "sensor-billing --data-dir, which defaults to .data)."
        ),
    ] = None,
) -> None:
    """Run API and worker with whatever is not configured supplied locally (Ctrl-C stops)."""
    folder: Path = data_dir or ctx.find_root().params["data_dir"]
    asyncio.run(run_dev(DevOptions(host=host, port=port, demo=demo, data_dir=folder), console))
