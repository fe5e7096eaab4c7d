"""Closing windows into the ledger: exact values, nothing twice, nothing silently dropped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import MeterReport
from sensor_billing.metering.service import ClosePolicy, CloseSummary, close_windows
from sensor_billing.metering.windows import floor_to_window
from tests.support.usage_data import expected_readings_by_window, generate_usage

HOUR = timedelta(hours=1)
GRACE = timedelta(minutes=2)
NOW = datetime.now(UTC).replace(microsecond=0)


async def close(
    sessions: SessionFactory,
    now: datetime = NOW,
    *,
    window: timedelta = HOUR,
    backfill_start: datetime | None = None,
) -> CloseSummary:
    async with unit_of_work(sessions) as session:
        policy = ClosePolicy(window=window, grace=GRACE, backfill_start=backfill_start)
        return await close_windows(session, policy, now)


async def ledger(sessions: SessionFactory) -> list[MeterReport]:
    async with sessions() as session:
        rows = await session.scalars(
            select(MeterReport).order_by(
                MeterReport.organization_id, MeterReport.event_name, MeterReport.window_start
            )
        )
        return list(rows)


async def test_each_window_counts_readings_received_and_sensors_active_at_its_close(
    sessions: SessionFactory,
) -> None:
    orgs = await generate_usage(
        sessions, organizations=4, start=NOW - timedelta(days=2), end=NOW, readings_per_org=400
    )
    await close(sessions)
    rows = await ledger(sessions)
    closed_through = floor_to_window(NOW - GRACE, HOUR)

    for org in orgs:
        readings = expected_readings_by_window(org, HOUR, closed_through)
        own = [row for row in rows if row.organization_id == org.id]
        counted = {r.window_start: r.value for r in own if r.event_name == "temperature_readings"}
        assert {start: value for start, value in counted.items() if value} == dict(readings)
        for row in own:
            assert row.window_end == row.window_start + HOUR
            assert row.window_end <= closed_through
            assert row.stripe_customer_id == org.customer_id
            if row.event_name == "active_sensors":
                assert row.value == org.active_sensors_at(row.window_end), row.window_end
                assert row.status == "pending"
        assert sum(counted.values()) == org.readings_between(
            datetime.min.replace(tzinfo=UTC), closed_through
        )


async def test_closing_twice_creates_nothing_new(sessions: SessionFactory) -> None:
    await generate_usage(
        sessions, organizations=2, start=NOW - timedelta(hours=6), end=NOW, readings_per_org=50
    )
    await close(sessions)
    first = [(r.identifier, r.value, r.status) for r in await ledger(sessions)]
    await close(sessions)
    # The last second before the next window becomes closable. (NOW + 30 s, used before, crossed
    # that line whenever the run started in the half minute before it: a flake.)
    await close(sessions, floor_to_window(NOW - GRACE, HOUR) + HOUR + GRACE - timedelta(seconds=1))
    assert [(r.identifier, r.value, r.status) for r in await ledger(sessions)] == first
    assert first


async def test_the_next_window_is_closed_once_it_ends_plus_the_grace(
    sessions: SessionFactory,
) -> None:
    await generate_usage(
        sessions, organizations=1, start=NOW - timedelta(hours=3), end=NOW, readings_per_org=30
    )
    await close(sessions)
    before = len(await ledger(sessions))
    later = floor_to_window(NOW, HOUR) + HOUR + GRACE + timedelta(seconds=1)
    await close(sessions, later)
    after = await ledger(sessions)
    assert len(after) == before + 2 or len(after) == before + 4  # one (or two) more windows
    assert max(r.window_end for r in after) == floor_to_window(later - GRACE, HOUR)


async def test_zero_reading_windows_are_kept_as_skipped_with_a_reason(
    sessions: SessionFactory,
) -> None:
    await generate_usage(
        sessions, organizations=1, start=NOW - timedelta(hours=12), end=NOW, readings_per_org=3
    )
    await close(sessions)
    rows = await ledger(sessions)
    empty = [r for r in rows if r.event_name == "temperature_readings" and r.value == 0]
    assert empty
    assert {(r.status, r.skip_reason) for r in empty} == {("skipped", "no readings in the window")}
    gauges = [r for r in rows if r.event_name == "active_sensors"]
    assert {r.status for r in gauges} == {"pending"}  # a gauge is reported even when unchanged


async def test_organization_without_stripe_customer_is_not_metered_and_is_named(
    sessions: SessionFactory,
) -> None:
    orgs = await generate_usage(
        sessions,
        organizations=1,
        start=NOW - timedelta(hours=3),
        end=NOW,
        readings_per_org=20,
        without_customer=1,
    )
    summary = await close(sessions)
    unbilled = orgs[1]
    assert unbilled.customer_id is None
    assert unbilled.id in summary.organizations_without_customer
    assert all(r.organization_id == orgs[0].id for r in await ledger(sessions))


async def test_deleted_customer_stops_metering(sessions: SessionFactory) -> None:
    orgs = await generate_usage(
        sessions, organizations=1, start=NOW - timedelta(hours=3), end=NOW, readings_per_org=20
    )
    async with unit_of_work(sessions) as session:
        await session.execute(
            text("UPDATE organizations SET stripe_customer_deleted_at = now() WHERE id = :id"),
            {"id": orgs[0].id},
        )
    await close(sessions)
    assert await ledger(sessions) == []


async def test_first_run_starts_at_the_earliest_reading_inside_stripes_limit(
    sessions: SessionFactory,
) -> None:
    orgs = await generate_usage(
        sessions, organizations=1, start=NOW - timedelta(days=40), end=NOW, readings_per_org=400
    )
    await close(sessions, window=timedelta(days=1))
    rows = await ledger(sessions)
    first = min(r.window_start for r in rows)
    inside = [m for m in orgs[0].readings if m >= NOW - timedelta(days=35) + HOUR]
    assert first == floor_to_window(min(inside), timedelta(days=1))
    assert {r.status for r in rows} <= {"pending", "skipped"}
    assert all(
        r.skip_reason != "beyond Stripe's 35-day limit for meter event timestamps" for r in rows
    )


async def test_backfill_older_than_35_days_marks_those_windows_not_sent(
    sessions: SessionFactory,
) -> None:
    await generate_usage(
        sessions, organizations=1, start=NOW - timedelta(days=40), end=NOW, readings_per_org=200
    )
    await close(sessions, window=timedelta(days=1), backfill_start=NOW - timedelta(days=40))
    rows = await ledger(sessions)
    too_old = [r for r in rows if r.window_end - timedelta(seconds=1) < NOW - timedelta(days=35)]
    assert too_old
    assert {r.status for r in too_old} == {"skipped"}
    assert {r.skip_reason for r in too_old} == {
        "beyond Stripe's 35-day limit for meter event timestamps"
    }
    recent = [r for r in rows if r not in too_old and r.event_name == "active_sensors"]
    assert recent
    assert {r.status for r in recent} == {"pending"}


async def test_identifiers_derive_from_the_ledger_key(sessions: SessionFactory) -> None:
    orgs = await generate_usage(
        sessions, organizations=1, start=NOW - timedelta(hours=2), end=NOW, readings_per_org=10
    )
    await close(sessions)
    rows = await ledger(sessions)
    assert rows
    for row in rows:
        assert row.identifier == (
            f"sb.{orgs[0].id}.{row.event_name}.{int(row.window_start.timestamp())}"
        )
        assert len(row.identifier) <= 100
        assert ":" not in row.identifier


async def test_a_reading_for_another_organizations_sensor_cannot_be_stored(
    sessions: SessionFactory,
) -> None:
    # Counting is per organization of the reading; the composite key makes a reading that
    # names another organization's sensor impossible (tests/db/test_tenancy.py), so it can
    # never be counted for the wrong customer. Here: the two organizations' counts stay apart.
    orgs = await generate_usage(
        sessions, organizations=2, start=NOW - timedelta(hours=2), end=NOW, readings_per_org=25
    )
    await close(sessions)
    totals: dict[uuid.UUID, int] = {}
    for row in await ledger(sessions):
        if row.event_name == "temperature_readings":
            totals[row.organization_id] = totals.get(row.organization_id, 0) + row.value
    closed_through = floor_to_window(NOW - GRACE, HOUR)
    for org in orgs:
        assert totals[org.id] == org.readings_between(NOW - timedelta(days=1), closed_through)
