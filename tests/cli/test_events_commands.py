"""`sensor-billing events list` against recorded webhook events."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from tests.cli.conftest import UNREACHABLE_DATABASE_URL, run_cli


async def record(sessions: SessionFactory, *events: tuple[str, str, str]) -> None:
    async with unit_of_work(sessions) as session:
        for event_id, event_type, processed_at in events:
            await session.execute(
                text(
                    "INSERT INTO stripe_events (event_id, event_type, processed_at)"
                    " VALUES (:id, :type, :at)"
                ),
                {"id": event_id, "type": event_type, "at": datetime.fromisoformat(processed_at)},
            )


@pytest.fixture
async def recorded(cli_env: SessionFactory) -> None:
    await record(
        cli_env,
        ("evt_old", "invoice.paid", "2026-10-01T08:00:00Z"),
        ("evt_mid", "customer.subscription.updated", "2026-11-10T08:00:00Z"),
        ("evt_new", "invoice.paid", "2026-11-20T08:00:00Z"),
    )


@pytest.mark.usefixtures("recorded")
def test_events_list_shows_newest_first() -> None:
    outcome = run_cli("events", "list")
    assert outcome.exit_code == 0, outcome.stderr
    lines = outcome.stdout
    assert lines.index("evt_new") < lines.index("evt_mid") < lines.index("evt_old")


@pytest.mark.usefixtures("recorded")
def test_events_list_filters_by_type_and_since_as_json() -> None:
    outcome = run_cli("events", "list", "--type", "invoice.paid", "--since", "2026-11-01", "--json")
    assert outcome.exit_code == 0, outcome.stderr
    events = json.loads(outcome.stdout)
    assert [(event["eventId"], event["type"]) for event in events] == [("evt_new", "invoice.paid")]
    assert events[0]["processedAt"].startswith("2026-11-20T08:00:00")


@pytest.mark.usefixtures("recorded")
def test_events_list_limit_keeps_the_newest() -> None:
    outcome = run_cli("events", "list", "--limit", "1", "--json")
    assert [event["eventId"] for event in json.loads(outcome.stdout)] == ["evt_new"]


@pytest.mark.usefixtures("cli_env")
def test_events_list_refuses_a_malformed_date_in_one_line() -> None:
    outcome = run_cli("events", "list", "--since", "yesterday")
    assert outcome.exit_code == 2
    assert "--since 'yesterday' is not a date" in outcome.stderr
    assert len(outcome.stderr.strip().splitlines()) == 1


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_events_list_refuses_a_date_outside_the_calendar_in_one_line(since: str) -> None:
    # Both are valid ISO 8601, but in UTC they fall before year 1 or after year 9999.
    outcome = run_cli("events", "list", "--since", since)
    assert outcome.exit_code == 2, outcome.stderr
    assert f"--since {since!r}" in outcome.stderr
    assert len(outcome.stderr.strip().splitlines()) == 1


def test_events_list_exits_3_when_postgresql_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE_DATABASE_URL)
    outcome = run_cli("events", "list")
    assert outcome.exit_code == 3
    assert "PostgreSQL at DATABASE_URL does not answer" in outcome.stderr
