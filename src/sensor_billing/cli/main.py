"""The root `sensor-billing` command and its sub-commands."""

from __future__ import annotations

import typer

from sensor_billing.cli import db, events
from sensor_billing.cli.serve import serve
from sensor_billing.cli.status import status

app = typer.Typer(
    name="sensor-billing",
    help="Bills temperature-monitoring organizations through Stripe, exactly once.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(events.app, name="events")
app.command()(serve)
app.command()(status)


def main() -> None:
    app()
