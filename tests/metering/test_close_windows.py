"""Closing windows into the ledger: exact values, nothing twice, nothing silently dropped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import MeterReport
from sensor_billing.metering.service import ClosePolicy, CloseSummary, close_windows
from sensor_billing.metering.windows import floor_to_window, oldest_sendable_timestamp
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
    # Inside the limit: the reading's window ends (its last second, the event timestamp) at or
    # after now - 35 days + the hour's margin, even when the reading itself is older.
    day = timedelta(days=1)
    limit = NOW - timedelta(days=35) + HOUR
    inside = [
        m for m in orgs[0].readings if floor_to_window(m, day) + day - timedelta(seconds=1) >= limit
    ]
    assert first == floor_to_window(min(inside), day)
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
    # Stripe's 35 days less the ledger's one-hour margin (oldest_sendable_timestamp). Without the
    # margin this test failed from 23:00 to 24:00 UTC, when a day window's last second falls
    # inside that hour.
    limit = oldest_sendable_timestamp(NOW)
    too_old = [r for r in rows if r.window_end - timedelta(seconds=1) < limit]
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


# --- Edge cases built by hand, with the expected values written out (not computed by the
# generator's oracle, which shares the SQL's boundary choices and never lands on a boundary).

# A whole hour two hours before the test's hour: every window below has ended long ago.
EDGE = floor_to_window(NOW, HOUR) - 2 * HOUR


async def add_organization(sessions: SessionFactory, customer: str) -> uuid.UUID:
    organization_id = uuid.uuid4()
    async with unit_of_work(sessions) as session:
        await session.execute(
            text("INSERT INTO organizations (id, name, stripe_customer_id) VALUES (:id, :n, :c)"),
            {"id": organization_id, "n": customer, "c": customer},
        )
    return organization_id


async def add_sensor(
    sessions: SessionFactory,
    organization_id: uuid.UUID,
    history: list[tuple[str, datetime]],
) -> uuid.UUID:
    """A sensor created with the first (status, since) of `history`, then changed to each next."""
    sensor_id = uuid.uuid4()
    (status, since), *changes = history
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO sensors (id, organization_id, serial, status, status_changed_at,"
                " created_at) VALUES (:id, :org, :serial, :status, :at, :at)"
            ),
            {
                "id": sensor_id,
                "org": organization_id,
                "serial": str(sensor_id),
                "status": status,
                "at": since,
            },
        )
        for status, since in changes:
            await session.execute(
                text("UPDATE sensors SET status = :status, status_changed_at = :at WHERE id = :id"),
                {"status": status, "at": since, "id": sensor_id},
            )
    return sensor_id


async def add_readings(
    sessions: SessionFactory, organization_id: uuid.UUID, sensor_id: uuid.UUID, *at: datetime
) -> None:
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO temperature_readings (organization_id, sensor_id, value_celsius,"
                " recorded_at, received_at) VALUES (:org, :sensor, 4.5, :at, :at)"
            ),
            [{"org": organization_id, "sensor": sensor_id, "at": moment} for moment in at],
        )


async def values(
    sessions: SessionFactory, organization_id: uuid.UUID
) -> dict[tuple[str, datetime], int]:
    return {
        (row.event_name, row.window_start): row.value
        for row in await ledger(sessions)
        if row.organization_id == organization_id
    }


async def test_a_reading_received_exactly_at_a_window_boundary_counts_in_the_window_it_starts(
    sessions: SessionFactory,
) -> None:
    org = await add_organization(sessions, "cus_boundary_reading")
    sensor = await add_sensor(sessions, org, [("active", EDGE - 5 * HOUR)])
    await add_readings(sessions, org, sensor, EDGE - HOUR, EDGE - timedelta(microseconds=1), EDGE)
    await close(sessions, EDGE + HOUR + GRACE)
    measured = await values(sessions, org)
    assert measured[("temperature_readings", EDGE - HOUR)] == 2
    assert measured[("temperature_readings", EDGE)] == 1


async def test_a_sensor_status_change_exactly_at_a_window_end_belongs_to_the_next_window(
    sessions: SessionFactory,
) -> None:
    # Windows are [start, end), like a reading received at EDGE, a status change at EDGE is
    # part of the window that starts there. The window ending at EDGE reports (at its last
    # second) the sensors active through its end: the one switched on at EDGE was not yet,
    # the one switched off at EDGE still was.
    switched_on = await add_organization(sessions, "cus_switched_on")
    sensor = await add_sensor(
        sessions, switched_on, [("inactive", EDGE - 5 * HOUR), ("active", EDGE)]
    )
    await add_readings(sessions, switched_on, sensor, EDGE - HOUR)
    switched_off = await add_organization(sessions, "cus_switched_off")
    sensor = await add_sensor(
        sessions, switched_off, [("active", EDGE - 5 * HOUR), ("inactive", EDGE)]
    )
    await add_readings(sessions, switched_off, sensor, EDGE - HOUR)

    await close(sessions, EDGE + HOUR + GRACE)

    on, off = await values(sessions, switched_on), await values(sessions, switched_off)
    assert (on[("active_sensors", EDGE - HOUR)], on[("active_sensors", EDGE)]) == (0, 1)
    assert (off[("active_sensors", EDGE - HOUR)], off[("active_sensors", EDGE)]) == (1, 0)


async def test_first_close_measures_a_sendable_window_whose_readings_came_before_the_limit(
    sessions: SessionFactory,
) -> None:
    # Stripe takes timestamps back to now - 35 days; rows keep an hour's margin. At `now` below
    # that edge is 20 minutes into the window `edge_window`, whose event timestamp (its last
    # second) is still sendable: its reading, 10 minutes into it, must be billed.
    now = EDGE + timedelta(minutes=30)
    edge_window = EDGE - timedelta(days=35) + HOUR
    org = await add_organization(sessions, "cus_edge")
    sensor = await add_sensor(sessions, org, [("active", edge_window - HOUR)])
    await add_readings(sessions, org, sensor, edge_window + timedelta(minutes=10), EDGE - HOUR)

    await close(sessions, now)

    rows = {(r.event_name, r.window_start): r for r in await ledger(sessions)}
    row = rows.get(("temperature_readings", edge_window))
    assert row is not None, "the window was never closed: its reading is billed nowhere"
    assert (row.value, row.status) == (1, "pending")
    assert min(start for _, start in rows) == edge_window


async def test_a_sensor_moved_to_another_organization_is_counted_for_its_new_owner(
    sessions: SessionFactory,
) -> None:
    # A sensor without readings can change organization (with readings, their composite key
    # to the sensor refuses it). From the move on it is the new owner's active sensor.
    old_owner = await add_organization(sessions, "cus_old_owner")
    new_owner = await add_organization(sessions, "cus_new_owner")
    since = floor_to_window(NOW, HOUR) - 3 * HOUR
    moved = await add_sensor(sessions, old_owner, [("active", since)])
    for org in (old_owner, new_owner):
        reader = await add_sensor(sessions, org, [("inactive", since)])
        await add_readings(sessions, org, reader, since)
    async with unit_of_work(sessions) as session:
        moved_at = await session.scalar(
            text("UPDATE sensors SET organization_id = :org WHERE id = :id RETURNING now()"),
            {"org": new_owner, "id": moved},
        )
    assert moved_at is not None

    # Closed through the end of the hour the move happened in.
    after_move = floor_to_window(moved_at, HOUR)
    await close(sessions, after_move + HOUR + GRACE)

    assert (await values(sessions, old_owner))[("active_sensors", after_move)] == 0
    assert (await values(sessions, new_owner))[("active_sensors", after_move)] == 1
    # Before the move, it was the old owner's.
    assert (await values(sessions, old_owner))[("active_sensors", since)] == 1
    assert (await values(sessions, new_owner))[("active_sensors", since)] == 0


async def test_a_longer_window_after_a_change_of_window_length_bills_every_reading_once(
    sessions: SessionFactory,
) -> None:
    # Closed in hours through 11:00, then METER_WINDOW_SECONDS becomes a day: the cursor is not
    # on a day boundary. The rest of that day is one short window [11:00, 24:00), then days.
    day = timedelta(days=1)
    ten = floor_to_window(EDGE, day) - day + 10 * HOUR
    org = await add_organization(sessions, "cus_window_change")
    sensor = await add_sensor(sessions, org, [("active", ten - day)])
    await add_readings(sessions, org, sensor, ten, ten + 30 * timedelta(minutes=1))
    await close(sessions, ten + HOUR + GRACE)
    await add_readings(
        sessions,
        org,
        sensor,
        ten + 3 * HOUR,
        ten + 14 * HOUR - timedelta(seconds=1),
        ten + 20 * HOUR,
    )

    await close(sessions, ten + 2 * day + GRACE, window=day)

    readings = {
        (row.window_start, row.window_end): row.value
        for row in await ledger(sessions)
        if row.event_name == "temperature_readings"
    }
    midnight = ten + 14 * HOUR
    assert readings == {
        (ten, ten + HOUR): 2,
        (ten + HOUR, midnight): 2,
        (midnight, midnight + day): 1,
    }
