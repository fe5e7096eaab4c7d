"""Readings whose transaction commits after their window was closed: billed once, later.

`received_at` defaults to the inserting transaction's start, so a transaction that stays open
past its window's close (plus the grace) commits readings into a window already measured. The
close bills them by arrival, in the next window it closes for the organization, and counts
them on that row (`late_readings`).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.metering.backfill import backfill_organization, plan_backfill
from sensor_billing.metering.service import ClosePolicy
from sensor_billing.metering.windows import floor_to_window
from tests.metering.conftest import DAY
from tests.metering.test_close_windows import (
    GRACE,
    HOUR,
    add_organization,
    add_readings,
    add_sensor,
    close,
    ledger,
)

SINCE = datetime(2020, 1, 1, tzinfo=UTC)
INSERT_WITH_DEFAULT_RECEIVED_AT = text(
    "INSERT INTO temperature_readings (organization_id, sensor_id, value_celsius, recorded_at)"
    " VALUES (:org, :sensor, 3.5, now())"
)


async def metered_organization(
    sessions: SessionFactory, customer: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """An organization with a Stripe customer and one sensor, active since long ago."""
    org = await add_organization(sessions, customer)
    return org, await add_sensor(sessions, org, [("active", SINCE)])


INSERT_RECEIVED_AT = text(
    "INSERT INTO temperature_readings (organization_id, sensor_id, value_celsius, recorded_at,"
    " received_at) VALUES (:org, :sensor, 1.0, :at, :at)"
)


async def insert_received_at(
    connection: AsyncConnection, org: uuid.UUID, sensor: uuid.UUID, *moments: datetime
) -> None:
    """Readings stamped by hand, in the connection's (open) transaction."""
    await connection.execute(
        INSERT_RECEIVED_AT, [{"org": org, "sensor": sensor, "at": moment} for moment in moments]
    )


async def billed_readings(sessions: SessionFactory, organization_id: uuid.UUID) -> int:
    return sum(
        row.value
        for row in await ledger(sessions)
        if row.organization_id == organization_id and row.event_name == "temperature_readings"
    )


async def received_readings(sessions: SessionFactory, organization_id: uuid.UUID) -> int:
    async with sessions() as session:
        value = await session.scalar(
            text("SELECT count(*) FROM temperature_readings WHERE organization_id = :org"),
            {"org": organization_id},
        )
    return int(value or 0)


async def insert_held(
    held: AsyncConnection, organization_id: uuid.UUID, sensor_id: uuid.UUID, count: int
) -> datetime:
    """Readings inserted, as the ingestion side does, in a transaction left open; returns
    their `received_at` (the transaction's start)."""
    for _ in range(count):
        await held.execute(
            INSERT_WITH_DEFAULT_RECEIVED_AT, {"org": organization_id, "sensor": sensor_id}
        )
    received = await held.scalar(text("SELECT now()"))
    assert isinstance(received, datetime)
    return received


async def test_readings_committed_after_their_window_closed_are_billed_in_a_later_window(
    sessions: SessionFactory, engine: AsyncEngine
) -> None:
    org, sensor = await metered_organization(sessions, "cus_late_commit")
    async with engine.connect() as held:
        await held.begin()
        received = await insert_held(held, org, sensor, 3)
        window = floor_to_window(received, HOUR)
        await add_readings(sessions, org, sensor, window + timedelta(seconds=1))
        # The window holding the held readings closes while their transaction is open.
        await close(sessions, window + HOUR + GRACE)
        assert await billed_readings(sessions, org) == 1
        await held.commit()

    await close(sessions, window + 2 * HOUR + GRACE)

    assert await received_readings(sessions, org) == 4
    assert await billed_readings(sessions, org) == 4
    rows = {
        row.window_start: row
        for row in await ledger(sessions)
        if row.organization_id == org and row.event_name == "temperature_readings"
    }
    assert (rows[window].value, rows[window].late_readings) == (1, 0)
    later = rows[window + HOUR]
    assert (later.value, later.late_readings, later.status) == (3, 3, "pending")


async def test_an_organizations_first_readings_committed_after_its_first_close_are_billed(
    sessions: SessionFactory, engine: AsyncEngine
) -> None:
    # Nothing of the organization was visible at its first close, so its cursor started at
    # the close's end, after the readings' received_at.
    org, sensor = await metered_organization(sessions, "cus_late_first_readings")
    async with engine.connect() as held:
        await held.begin()
        received = await insert_held(held, org, sensor, 2)
        window = floor_to_window(received, HOUR)
        await close(sessions, window + HOUR + GRACE)
        await held.commit()

    await close(sessions, window + 2 * HOUR + GRACE)

    assert await billed_readings(sessions, org) == await received_readings(sessions, org) == 2


async def test_a_transaction_open_across_several_closes_is_billed_once_at_the_first_after_it(
    sessions: SessionFactory, engine: AsyncEngine
) -> None:
    org, sensor = await metered_organization(sessions, "cus_long_transaction")
    async with engine.connect() as held:
        await held.begin()
        received = await insert_held(held, org, sensor, 5)
        window = floor_to_window(received, HOUR)
        for hours in range(1, 4):
            await add_readings(sessions, org, sensor, window + (hours - 1) * HOUR)
            await close(sessions, window + hours * HOUR + GRACE)
        await held.commit()
    for hours in range(4, 7):
        await close(sessions, window + hours * HOUR + GRACE)

    assert await billed_readings(sessions, org) == await received_readings(sessions, org) == 8
    late = {
        row.window_start: row.late_readings
        for row in await ledger(sessions)
        if row.organization_id == org and row.event_name == "temperature_readings"
    }
    assert late == {window + hours * HOUR: 5 if hours == 3 else 0 for hours in range(6)}


async def test_readings_committing_while_windows_close_are_each_billed_once(
    sessions: SessionFactory, engine: AsyncEngine
) -> None:
    """Writers commit readings stamped around the moving close (some in windows already
    closed, some in the window closing now) while closes run; every reading is billed once."""
    orgs = [await add_organization(sessions, f"cus_race_{n}") for n in range(3)]
    sensors = {org: await add_sensor(sessions, org, [("active", SINCE)]) for org in orgs}
    start = floor_to_window(datetime.now(UTC), HOUR) + HOUR
    clock = {"end": start}
    stop = asyncio.Event()
    rng = random.Random(5)

    async def writer(number: int) -> None:
        while not stop.is_set():
            org = rng.choice(orgs)
            async with engine.begin() as connection:
                for _ in range(rng.randint(1, 4)):
                    # Anywhere from two windows before the next close to just after it.
                    offset = timedelta(seconds=rng.uniform(-2 * 3600, 60))
                    await insert_received_at(connection, org, sensors[org], clock["end"] + offset)
                await asyncio.sleep(rng.uniform(0, 0.02))

    writers = [asyncio.create_task(writer(n)) for n in range(4)]
    try:
        for _ in range(12):
            await asyncio.sleep(0.05)
            await close(sessions, clock["end"] + GRACE)
            clock["end"] += HOUR
    finally:
        stop.set()
        await asyncio.gather(*writers)
    # Two more closes: one bills what committed after the last, the second finds nothing new.
    for _ in range(2):
        await close(sessions, clock["end"] + GRACE)
        clock["end"] += HOUR

    for org in orgs:
        assert await billed_readings(sessions, org) == await received_readings(sessions, org)


async def test_backfill_bills_the_history_before_metering_began_but_not_a_late_reading_twice(
    sessions: SessionFactory, engine: AsyncEngine
) -> None:
    # Metering began at METER_BACKFILL_START; a reading before it that the first close saw is
    # history (backfill's to bill), one committed after the first close is billed by arrival.
    now = floor_to_window(datetime.now(UTC), HOUR) - 2 * HOUR
    metering_start = now - 5 * HOUR
    org, sensor = await metered_organization(sessions, "cus_backfill_and_late")
    await add_readings(sessions, org, sensor, now - 8 * HOUR, now - 3 * HOUR)
    async with engine.connect() as held:
        await held.begin()
        await insert_received_at(held, org, sensor, now - 7 * HOUR)
        await close(sessions, now, backfill_start=metering_start)
        await held.commit()
    await close(sessions, now + HOUR, backfill_start=metering_start)
    assert await billed_readings(sessions, org) == 2  # on time, and the late one

    policy = ClosePolicy(window=HOUR, grace=GRACE, backfill_start=metering_start)
    async with unit_of_work(sessions) as session:
        plan = await plan_backfill(
            session, policy, since=now - 10 * HOUR, until=now, now=now + HOUR, organization_id=org
        )
    async with unit_of_work(sessions) as session:
        await backfill_organization(
            session, policy, org, start=plan.start, end=plan.end, now=now + HOUR
        )

    assert await billed_readings(sessions, org) == await received_readings(sessions, org) == 3


async def test_the_worker_counts_the_late_readings_it_bills_in_its_metrics(
    sessions: SessionFactory, engine: AsyncEngine, make_worker: Any
) -> None:
    today = floor_to_window(datetime.now(UTC), DAY)
    org, sensor = await metered_organization(sessions, "cus_gen_late_metric")
    await add_readings(sessions, org, sensor, today - DAY + HOUR)
    moment = {"now": datetime.now(UTC)}
    worker = make_worker(clock=lambda: moment["now"])
    before = REGISTRY.get_sample_value("sensor_billing_late_readings_total") or 0.0
    async with engine.connect() as held:
        await held.begin()
        await insert_received_at(held, org, sensor, *(today - timedelta(minutes=m) for m in (1, 2)))
        await worker.start()  # closes once, while the transaction is open
        await held.commit()
    moment["now"] += DAY
    closed = await worker.run_close_windows()

    assert closed["late_readings"] == 2
    after = REGISTRY.get_sample_value("sensor_billing_late_readings_total")
    assert after == before + 2
    assert await billed_readings(sessions, org) == await received_readings(sessions, org) == 3
