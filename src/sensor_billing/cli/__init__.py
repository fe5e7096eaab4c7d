"""The `sensor-billing` command: thin commands that parse input, call a service, map errors."""

from sensor_billing.cli.main import app, main

__all__ = ["app", "main"]
