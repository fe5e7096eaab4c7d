"""While `sensor-billing dev` runs, the CLI in its folder uses dev's services, from another
process with none of them in its environment (as in a second terminal), and says so."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sensor_billing.db import migrate
from tests.support.dev_process import (
    COMMAND,
    clean_env,
    open_folder,
    start_dev,
    stop,
    wait_until_ready,
)
from tests.support.net import free_port
from tests.support.terminal import run_in_terminal

# dev's own short windows, so the demo's ledger rows exist within ~20 s. The CLI's environment
# has none of these: it gets them from dev too.
DEV_ENV = {"METER_WINDOW_SECONDS": "10", "METER_GRACE_SECONDS": "1"}


@dataclass(frozen=True)
class RunningDev:
    pid: int
    folder: Path  # the working directory dev was started in; its data is in .data
    log: Path


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def running_dev() -> Iterator[RunningDev]:
    """One dev with --demo for the module (starting it is slow), in its own folder."""
    with open_folder("sb-dev-cli-") as folder:
        port = free_port()
        log = folder / "dev.log"
        process = start_dev(port, None, clean_env(**DEV_ENV), log, "--demo", cwd=folder)
        try:
            wait_until_ready(process, f"http://127.0.0.1:{port}", log)
            yield RunningDev(pid=process.pid, folder=folder, log=log)
        finally:
            assert stop(process) == 0, log.read_text()


def cli(*args: str, cwd: Path, **env: str) -> Outcome:
    result = subprocess.run(
        [COMMAND, *args], env=clean_env(**env), cwd=cwd, capture_output=True, timeout=60
    )
    return Outcome(result.returncode, result.stdout.decode(), result.stderr.decode())


def ledger_rows(dev: RunningDev) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        outcome = cli("usage", "ledger", "--json", cwd=dev.folder)
        assert outcome.code == 0, outcome.stderr
        rows: list[dict[str, Any]] = json.loads(outcome.stdout)
        if rows:
            return rows
        time.sleep(1)
    raise AssertionError(f"no ledger rows within 60 s:\n{dev.log.read_text()}")


def test_status_reports_devs_database_current_and_its_redis(running_dev: RunningDev) -> None:
    outcome = cli("status", "--json", cwd=running_dev.folder)

    assert outcome.code == 0, outcome.stderr
    report = json.loads(outcome.stdout)  # stdout holds the JSON alone
    [head] = migrate.heads("postgresql://unused/x")
    assert report["postgresql"] == {"ok": True, "revision": head, "upToDate": True}
    assert report["redis"] == {"ok": True}
    [note] = outcome.stderr.splitlines()
    assert note.startswith(
        f"note: using the services of sensor-billing dev in .data (pid {running_dev.pid}) for "
    )
    assert "DATABASE_URL" in note
    assert "REDIS_URL" in note


def test_stripe_trigger_is_signed_with_devs_secret_and_processed_by_devs_api(
    running_dev: RunningDev,
) -> None:
    sent = cli("stripe", "trigger", "invoice.paid", cwd=running_dev.folder)

    assert sent.code == 0, sent.stdout + sent.stderr
    match = re.search(r"sent invoice\.paid (evt_\w+): HTTP 200", sent.stdout)
    assert match, sent.stdout
    assert json.loads(sent.stdout.splitlines()[1])["outcome"] == "processed"
    listed = cli("events", "list", "--type", "invoice.paid", "--json", cwd=running_dev.folder)
    assert match.group(1) in [event["eventId"] for event in json.loads(listed.stdout)]


def test_usage_ledger_lists_the_demos_rows_in_devs_windows(running_dev: RunningDev) -> None:
    rows = ledger_rows(running_dev)

    assert len({row["organizationId"] for row in rows}) == 3  # the demo's organizations
    assert {row["eventName"] for row in rows} <= {"active_sensors", "temperature_readings"}
    for row in rows:
        start, end = (row["windowStart"], row["windowEnd"])
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        assert seconds == int(DEV_ENV["METER_WINDOW_SECONDS"])


def test_the_ledger_piped_from_a_terminal_prints_every_row_whole(
    running_dev: RunningDev,
) -> None:
    rows = ledger_rows(running_dev)

    code, out = run_in_terminal(
        [COMMAND, "usage", "ledger", "--limit", "10000"],  # the rows above, and any newer
        env=clean_env(),
        cwd=running_dev.folder,
    )

    assert code == 0, out
    assert "…" not in out
    for row in rows:
        assert row["organizationId"] in out
        assert datetime.fromisoformat(row["windowStart"]).isoformat(timespec="minutes") in out


def test_another_folder_reaches_dev_with_data_dir(running_dev: RunningDev, tmp_path: Path) -> None:
    outcome = cli("--data-dir", str(running_dev.folder / ".data"), "status", "--json", cwd=tmp_path)

    assert outcome.code == 0, outcome.stderr
    assert json.loads(outcome.stdout)["postgresql"]["upToDate"] is True


def test_the_environment_still_wins_over_dev(running_dev: RunningDev) -> None:
    outcome = cli("status", "--json", cwd=running_dev.folder, REDIS_URL="redis://127.0.0.1:1/0")

    assert outcome.code == 3
    report = json.loads(outcome.stdout)
    assert report["postgresql"]["ok"] is True
    assert report["redis"]["ok"] is False
    assert outcome.stderr.splitlines()[0].endswith("; the environment or .env sets REDIS_URL")
