"""`sensor-billing status`: reachability, queue depths and ledger progress."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sensor_billing.db import SessionFactory
from sensor_billing.jobs.connection import open_queue
from sensor_billing.jobs.registry import JobNames, QueueNames
from tests.cli.conftest import UNREACHABLE_DATABASE_URL, UNREACHABLE_REDIS_URL, run_cli
from tests.support.usage_data import generate_usage


def today() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


@pytest.fixture
async def busy_service(cli_env: SessionFactory, redis_url: str) -> None:
    """Closed windows with pending rows, and one waiting meter report job."""
    await generate_usage(
        cli_env,
        organizations=1,
        start=today() - timedelta(days=2),
        end=today(),
        readings_per_org=20,
    )
    assert run_cli("usage", "close").exit_code == 0
    queue: Any = open_queue(redis_url, QueueNames.METER_REPORTING)
    try:
        await queue.add(JobNames.METER_REPORT.value, {"value": 1}, {"jobId": "sb.waiting"})
    finally:
        await queue.close()


@pytest.mark.usefixtures("busy_service")
def test_status_json_reports_queues_and_ledger_progress() -> None:
    outcome = run_cli("status", "--json")

    assert outcome.exit_code == 0, outcome.stderr
    report = json.loads(outcome.stdout)
    assert report["postgresql"]["ok"] is True
    assert report["postgresql"]["upToDate"] is True
    assert report["redis"] == {"ok": True}
    assert report["queues"]["meter-reporting"]["waiting"] == 1
    assert set(report["queues"]) == {name.value for name in QueueNames}
    assert report["ledger"]["closedThrough"] == today().isoformat()
    assert report["ledger"]["oldestPendingAgeSeconds"] >= 0
    assert report["ledger"]["oldestPendingAt"] is not None


@pytest.mark.usefixtures("busy_service")
def test_status_text_shows_depths_and_the_oldest_pending_row() -> None:
    outcome = run_cli("status")
    assert outcome.exit_code == 0, outcome.stderr
    assert "meter-reporting: 1 waiting" in outcome.stdout
    assert "oldest pending:" in outcome.stdout
    assert f"last closed window ends {today().isoformat()}" in outcome.stdout


@pytest.mark.usefixtures("cli_env")
def test_status_with_an_empty_ledger_says_so() -> None:
    outcome = run_cli("status", "--json")
    assert outcome.exit_code == 0, outcome.stderr
    assert json.loads(outcome.stdout)["ledger"] == {
        "oldestPendingAt": None,
        "oldestPendingAgeSeconds": None,
        "closedThrough": None,
    }


@pytest.mark.usefixtures("cli_env")
def test_status_exits_3_when_postgresql_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE_DATABASE_URL)
    outcome = run_cli("status", "--json")
    assert outcome.exit_code == 3
    report = json.loads(outcome.stdout)
    assert report["postgresql"]["ok"] is False
    assert report["redis"] == {"ok": True}
    assert report["ledger"] is None


@pytest.mark.usefixtures("cli_env")
def test_status_exits_3_when_redis_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", UNREACHABLE_REDIS_URL)
    outcome = run_cli("status")
    assert outcome.exit_code == 3
    assert "redis       unavailable" in outcome.stdout
    assert "postgresql  ok" in outcome.stdout
