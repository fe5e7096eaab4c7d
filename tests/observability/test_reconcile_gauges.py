"""`GET /metrics` shows the worker's newest daily reconcile (read at scrape time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.metering import daily_checks_repository
from tests.observability.conftest import scrape, value


async def test_the_newest_daily_reconcile_is_in_the_scrape(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    before = await scrape(client)
    day = datetime(2026, 12, 3, tzinfo=UTC)
    finished = datetime(2026, 12, 4, 2, 31, tzinfo=UTC)
    for outcome, hours, at in (
        ("no_drift", 0, finished - timedelta(days=1)),
        ("drift", 2, finished),
    ):
        async with unit_of_work(sessions) as session:
            await daily_checks_repository.record_run(
                session,
                {
                    "period_start": day,
                    "period_end": day + timedelta(days=1),
                    "outcome": outcome,
                    "hours_with_drift": hours,
                    "readings_drift": Decimal(5),
                    "started_at": at,
                    "finished_at": at,
                },
            )

    after = await scrape(client)

    assert ("sensor_billing_reconcile_drift_hours", frozenset()) not in before
    assert value(after, "sensor_billing_reconcile_drift_hours") == 2
    assert value(after, "sensor_billing_reconcile_readings_drift") == 5
    assert value(after, "sensor_billing_reconcile_last_run_failed") == 0
    assert (
        value(after, "sensor_billing_reconcile_last_run_timestamp_seconds") == finished.timestamp()
    )
