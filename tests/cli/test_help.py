"""`--help` shows a value's type for options that take one, and none on switches."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from sensor_billing.cli import app


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            paths += command_paths(sub, (*path, name))
    return paths


ALL_COMMANDS = command_paths(typer.main.get_command(app))


def help_of(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda path: " ".join(path) or "root")
def test_no_switch_shows_a_type_placeholder(path: tuple[str, ...]) -> None:
    assert "<bool>" not in help_of(*path)


def test_a_switch_is_listed_without_a_placeholder_and_a_value_option_with_its_type() -> None:
    lines = help_of("dev").splitlines()
    [demo] = [line for line in lines if "--demo" in line]
    [port] = [line for line in lines if "--port" in line]

    assert "Demo organizations and live readings." in demo
    assert "<" not in demo
    assert "<int range>" in port
