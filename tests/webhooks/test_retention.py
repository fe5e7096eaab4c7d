"""Pruning the idempotency store, never inside Stripe's retry window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from sensor_billing.cli import app
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.errors import InvalidInputError
from sensor_billing.webhooks.retention import parse_age, prune_processed_events
from tests.support.billing_state import add_notices, new_organization
from tests.support.databases import run_in_thread
from tests.support.state import count

NOW = datetime(2026, 6, 1, tzinfo=UTC)


async def add_events(sessions: SessionFactory, ages_in_days: list[float]) -> None:
    async with unit_of_work(sessions) as session:
        for index, age in enumerate(ages_in_days):
            await session.execute(
                text(
                    "INSERT INTO stripe_events (event_id, event_type, processed_at)"
                    " VALUES (:id, 'invoice.paid', :at)"
                ),
                {"id": f"evt_{index}", "at": NOW - timedelta(days=age)},
            )


async def test_prune_deletes_only_events_older_than_the_age(sessions: SessionFactory) -> None:
    await add_events(sessions, [1, 3.5, 29.9, 30.1, 45, 400])
    deleted = await prune_processed_events(sessions, timedelta(days=30), now=NOW, batch_size=2)
    assert deleted == 3
    assert await count(sessions, "stripe_events") == 3
    assert await count(sessions, "stripe_events", "event_id IN ('evt_0','evt_1','evt_2')") == 3


async def test_prune_refuses_an_age_inside_stripes_retry_window(sessions: SessionFactory) -> None:
    await add_events(sessions, [2.5])
    with pytest.raises(InvalidInputError, match="3-day retry window"):
        await prune_processed_events(sessions, timedelta(days=3), now=NOW)
    assert await count(sessions, "stripe_events") == 1


@pytest.mark.parametrize(("text_age", "days"), [("30d", 30), ("96h", 4), (" 7d ", 7)])
def test_ages_are_read_in_days_or_hours(text_age: str, days: int) -> None:
    assert parse_age(text_age) == timedelta(days=days)


@pytest.mark.parametrize("bad", ["30", "thirty days", "2d", "72h", "-5d"])
def test_unreadable_or_too_short_ages_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_age(bad)


async def test_events_prune_command(
    sessions: SessionFactory, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    async with unit_of_work(sessions) as session:
        for event_id, age in (("evt_old", 40), ("evt_new", 1)):
            await session.execute(
                text(
                    "INSERT INTO stripe_events (event_id, event_type, processed_at)"
                    " VALUES (:id, 'invoice.paid', :at)"
                ),
                {"id": event_id, "at": now - timedelta(days=age)},
            )
    org = await new_organization(sessions, "cus_prune")
    await add_notices(sessions, org, [40, 45, 1, None], now=now, made_days_before=60)
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = run_in_thread(CliRunner().invoke, app, ["events", "prune", "--older-than", "30d"])
    assert result.exit_code == 0, result.output
    assert "pruned 1 event(s)" in result.output
    assert "pruned 2 entitlement notice(s)" in result.output
    assert await count(sessions, "entitlement_notices") == 2
    assert await count(sessions, "stripe_events") == 1

    refused = run_in_thread(CliRunner().invoke, app, ["events", "prune", "--older-than", "1d"])
    assert refused.exit_code == 2
    assert "retry window" in refused.output


@pytest.mark.parametrize("age", ["99999999999d", "999999999d"])
async def test_events_prune_refuses_an_age_too_long_for_a_date_with_a_message(
    age: str, sessions: SessionFactory, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_events(sessions, [400])
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = run_in_thread(CliRunner().invoke, app, ["events", "prune", "--older-than", age])
    assert result.exit_code == 2, result.output
    assert age in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert await count(sessions, "stripe_events") == 1
