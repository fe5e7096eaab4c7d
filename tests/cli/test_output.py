"""Tables print whole when stdout is not a terminal (a pipe, a file, `less`)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from sensor_billing.db import SessionFactory
from tests.cli.test_events_commands import record
from tests.support.terminal import TERMINAL_COLUMNS, run_in_terminal

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # a terminal gets bold headers
COMMAND = str(Path(sys.executable).parent / "sensor-billing")
LONG_EVENT_ID = "evt_" + "1234567890" * 6
LONG_TYPE = "v1.billing.meter.error_report_triggered.with_a_long_suffix_for_this_test"


@pytest.fixture
async def long_event(cli_env: SessionFactory) -> None:
    await record(cli_env, (LONG_EVENT_ID, LONG_TYPE, "2026-11-20T08:00:00Z"))


def command_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "COLUMNS"))}
    return {**env, "DATABASE_URL": database_url}


@pytest.mark.usefixtures("long_event")
def test_a_table_piped_from_a_terminal_prints_every_value_whole(
    database_url: str, tmp_path: Path
) -> None:
    code, out = run_in_terminal(
        [COMMAND, "events", "list"], env=command_env(database_url), cwd=tmp_path
    )

    assert code == 0, out
    [row] = [line for line in out.splitlines() if LONG_EVENT_ID in line]
    assert LONG_TYPE in row
    assert "2026-11-20T08:00:00+00:00" in row
    assert "…" not in out
    assert len(row) > TERMINAL_COLUMNS


@pytest.mark.usefixtures("long_event")
def test_on_a_terminal_a_table_still_fits_its_width(database_url: str, tmp_path: Path) -> None:
    code, out = run_in_terminal(
        [COMMAND, "events", "list"],
        env=command_env(database_url),
        cwd=tmp_path,
        stdout_to_terminal=True,
    )

    assert code == 0, out
    lines = [ANSI_ESCAPE.sub("", line) for line in out.splitlines() if line.strip()]
    assert any("evt_" in line for line in lines), out
    assert max(len(line) for line in lines) <= TERMINAL_COLUMNS
