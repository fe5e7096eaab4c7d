"""Running operator commands against the test database and Redis."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from sensor_billing.cli import app
from sensor_billing.db import SessionFactory
from tests.support.databases import run_in_thread

UNREACHABLE_DATABASE_URL = "postgresql://postgres@127.0.0.1:1/x"
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> Outcome:
    """The command as a script runs it; commands call asyncio.run, so off the test's loop."""
    result = run_in_thread(CliRunner().invoke, app, list(args))
    return Outcome(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def cli_env(
    database_url: str, redis_url: str, sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> SessionFactory:
    """Commands see the test database and Redis; tables and Redis are emptied afterwards."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("METER_WINDOW_SECONDS", "86400")
    monkeypatch.setenv("METER_GRACE_SECONDS", "0")
    return sessions
