"""The `sensor-billing` command: thin commands that parse input, call a service, map errors.

`main` imports the commands (seconds of imports) only after a `worker` has a SIGTERM handler
(`early_stop`); `app` is imported on first use.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from sensor_billing.cli.early_stop import exit_on_sigterm_while_starting

if TYPE_CHECKING:
    from sensor_billing.cli.main import app


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        exit_on_sigterm_while_starting()
    from sensor_billing.cli.main import main as run_command

    run_command()


def __getattr__(name: str) -> Any:
    if name == "app":
        from sensor_billing.cli.main import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "main"]
