"""The one place that turns the service's errors into a message and an exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from sensor_billing.cli.output import stderr_console
from sensor_billing.errors import (
    ApiUnreachableError,
    ConfigurationError,
    DatabaseUnavailableError,
    InvalidInputError,
    InvalidJobDataError,
    QueueUnavailableError,
    SensorBillingError,
    UnknownEventTypeError,
)

# Exit codes scripts can rely on (typer itself uses 2 for a usage error).
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

stderr = stderr_console()

P = ParamSpec("P")
R = TypeVar("R")


def exit_code_for(error: SensorBillingError) -> int:
    if isinstance(
        error,
        ConfigurationError | InvalidInputError | InvalidJobDataError | UnknownEventTypeError,
    ):
        return EXIT_USAGE
    if isinstance(error, DatabaseUnavailableError | QueueUnavailableError | ApiUnreachableError):
        return EXIT_UNAVAILABLE
    return EXIT_FAILURE


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Print a `SensorBillingError` as one line (no traceback) and exit with its code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except SensorBillingError as error:
            stderr.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(exit_code_for(error)) from None

    return wrapper
