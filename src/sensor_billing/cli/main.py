"""The root `sensor-billing` command and its sub-commands."""

from __future__ import annotations

import typer

from sensor_billing.cli import customers, db, events, jobs, stripe, usage
from sensor_billing.cli.dev import dev
from sensor_billing.cli.help import hide_flag_types
from sensor_billing.cli.reconcile import correct, reconcile
from sensor_billing.cli.serve import serve
from sensor_billing.cli.status import status
from sensor_billing.cli.worker import worker

hide_flag_types()
app = typer.Typer(
    name="sensor-billing",
    help="Bills temperature-monitoring organizations through Stripe, exactly once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(events.app, name="events")
app.add_typer(jobs.app, name="jobs")
usage.app.command()(correct)
app.add_typer(usage.app, name="usage")
app.add_typer(stripe.app, name="stripe")
app.add_typer(customers.app, name="customers")
app.command()(dev)
app.command()(reconcile)
app.command()(serve)
app.command()(status)
app.command()(worker)


def main() -> None:
    app()
