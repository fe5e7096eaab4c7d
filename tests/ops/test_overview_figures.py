"""Figures of the /ops overview that come from the ledger and the daily checks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
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
