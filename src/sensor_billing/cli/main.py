"""The root `sensor-billing` command and its sub-commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sensor_billing.cli import customers, db, events, jobs, keys, orgs, stripe, usage
from sensor_billing.cli.dev import dev
from sensor_billing.cli.dev_services import running_dev_fallback
from sensor_billing.cli.help import hide_flag_types
from sensor_billing.cli.openapi import openapi
from sensor_billing.cli.reconcile import correct, reconcile
from sensor_billing.cli.resend import resend_command
from sensor_billing.cli.serve import serve
from sensor_billing.cli.status import status
from sensor_billing.cli.worker import worker
from sensor_billing.devtools.dev_services import DEFAULT_DATA_DIR
from sensor_billing.settings import use_fallback

# The service's own processes read only the environment and `.env`: a folder where a dev
# happens to run must never redirect a deployed API or worker.
SERVICE_COMMANDS = frozenset({"dev", "serve", "worker"})

hide_flag_types()
app = typer.Typer(
    name="sensor-billing",
    help="Bills temperature-monitoring organizations through Stripe, exactly once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path,
        typer.Option(
            help="sensor-billing dev's data folder: while dev runs there, the commands use its "
            "services for what the environment and .env leave unset."
        ),
    ] = DEFAULT_DATA_DIR,
) -> None:
    if ctx.invoked_subcommand in SERVICE_COMMANDS:
        use_fallback(None)
    else:
        use_fallback(running_dev_fallback(data_dir))


app.add_typer(db.app, name="db")
app.add_typer(events.app, name="events")
app.add_typer(jobs.app, name="jobs")
usage.app.command()(correct)
usage.app.command("resend")(resend_command)
app.add_typer(usage.app, name="usage")
app.add_typer(stripe.app, name="stripe")
app.add_typer(customers.app, name="customers")
app.add_typer(keys.app, name="keys")
app.add_typer(orgs.app, name="orgs")
app.command()(dev)
app.command()(openapi)
app.command()(reconcile)
app.command()(serve)
app.command()(status)
app.command()(worker)


def main() -> None:
    app()
