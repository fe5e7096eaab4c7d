"""Figures of the /ops overview that come from the ledger and the daily checks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.metering import daily_checks_repository
from tests.ops.conftest import BEARER, metric


async def add_window_rows(sessions: SessionFactory, late_readings: list[int]) -> None:
    """`temperature_readings` rows of windows closed just now, billing these late readings."""
    org = uuid.uuid4()
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO organizations (id, name, stripe_customer_id) VALUES (:o, 'L', 'cus_l')"
            ),
            {"o": org},
        )
        for number, late in enumerate(late_readings):
            window = start - timedelta(hours=number + 1)
            await session.execute(
                text(
                    "INSERT INTO meter_reports (organization_id, event_name, window_start,"
                    " window_end, value, stripe_customer_id, identifier, late_readings)"
                    " VALUES (:o, 'temperature_readings', :s, :e, :v, 'cus_l', :i, :late)"
                ),
                {
                    "o": org,
                    "s": window,
                    "e": window + timedelta(hours=1),
                    "v": late + 10,
                    "i": f"sb.{org}.temperature_readings.{int(window.timestamp())}",
                    "late": late,
                },
            )


async def test_the_overview_shows_the_late_readings_billed_in_the_last_24_hours(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await add_window_rows(sessions, [3, 0, 4])

    page = await client.get("/ops", headers=BEARER)

    assert page.status_code == 200
    assert metric(page.text, "late-readings") == "7"


async def add_run(sessions: SessionFactory, **values: Any) -> None:
    """A recorded daily reconcile (what metering/daily_checks.py writes)."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    row = {
        "period_start": day,
        "period_end": day + timedelta(days=1),
        "outcome": "no_drift",
        "started_at": datetime.now(UTC),
        "finished_at": datetime.now(UTC),
        **values,
    }
    async with unit_of_work(sessions) as session:
        await daily_checks_repository.record_run(session, row)


async def test_the_overview_shows_the_newest_daily_reconcile_red_when_it_found_drift(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await add_run(sessions, finished_at=datetime.now(UTC) - timedelta(days=1))
    await add_run(
        sessions,
        outcome="drift",
        hours_with_drift=3,
        readings_drift=Decimal(-42),
        organizations_with_drift=2,
        events_pruned=17,
        notices_pruned=5,
    )

    page = (await client.get("/ops", headers=BEARER)).text

    assert metric(page, "reconcile-outcome") == "drift"
    assert metric(page, "reconcile-drift-hours") == "3"
    assert metric(page, "reconcile-readings-drift") == "-42"
    assert metric(page, "reconcile-events-pruned") == "17"
    assert metric(page, "reconcile-notices-pruned") == "5"
    assert 'class="card alert" id="reconcile"' in page


async def test_the_overview_turns_red_when_the_daily_reconcile_stopped_running(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await add_run(sessions, finished_at=datetime.now(UTC) - timedelta(days=3))

    page = (await client.get("/ops", headers=BEARER)).text

    assert metric(page, "reconcile-outcome") == "no drift"
    assert 'class="card alert" id="reconcile"' in page


async def test_before_the_first_daily_reconcile_the_overview_says_so_without_an_alert(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    page = (await client.get("/ops", headers=BEARER)).text

    assert metric(page, "reconcile-outcome") == "no run yet"
    assert 'class="card " id="reconcile"' in page
