"""Closing windows against an oracle, on seeded random usage full of boundary instants.

The oracle is written in plain Python from the rules (README, Metering), not from the SQL:
times are integer microseconds since the Unix epoch, a window is [start, end), a reading
counts in the window holding its `received_at`, a sensor counts when its status (and owner)
at the window's last instant, end - 1 us, is active; windows close once end + grace <= now;
a new organization starts at its earliest reading in a window whose last second Stripe still
accepts (or at the backfill start); a cursor off the grid gets a short window up to the next
boundary. Timestamps land on, one microsecond before and after window boundaries, on the
Stripe edge, and the window length changes between closes (hours, days, and back).

Late commits: before some closes a transaction of its own inserts readings (stamped in the
windows about to close, in older ones, or later) and commits only after the close. A reading
a close could not see and whose `received_at` is before the organization's cursor is billed by
arrival, in the first window the organization's next close closes (`late_readings`).
"""

from __future__ import annotations

import bisect
import itertools
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import MeteringCursor, MeterReport
from sensor_billing.metering.service import ClosePolicy, close_windows

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
STRIPE_LIMIT = 35 * DAY
STRIPE_MARGIN = HOUR
GRIDS = (15 * MINUTE, HOUR, 2 * HOUR, DAY)
OFFSETS = (0, 0, 0, -1, -1, 1, -SECOND, SECOND)
BEYOND = "beyond Stripe's 35-day limit for meter event timestamps"
EMPTY = "no readings in the window"
ACTIVE_SENSORS = "active_sensors"
READINGS = "temperature_readings"
# A fixed day, so the seeds replay exactly (the close takes `now` as an argument).
BASE = 60_000 * DAY  # 2134-04-11, a fixed day
SEEDS = range(6)


def at(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def micros_of(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


@dataclass
class Org:
    id: uuid.UUID
    customer: str | None
    deleted: bool = False
    readings: list[int] = field(default_factory=list)  # received_at, committed, kept sorted
    readers: list[uuid.UUID] = field(default_factory=list)
    # Each committed reading's received_at and the number of the first close that saw it.
    commits: list[tuple[int, int]] = field(default_factory=list)
    # Committed since the snapshot stored on the cursor was taken: the next close's to bill.
    unseen: list[int] = field(default_factory=list)
    started_at_close: int | None = None  # the close that created the cursor
    advanced_at_close: int | None = None  # the last close that moved the cursor

    @property
    def metered(self) -> bool:
        return self.customer is not None and not self.deleted


@dataclass(frozen=True)
class Row:
    window_end: int
    value: int
    status: str
    skip_reason: str | None
    customer: str | None
    late: int = 0


LedgerKey = tuple[uuid.UUID, str, int]  # organization, meter, window start


@dataclass
class World:
    rng: random.Random
    orgs: list[Org] = field(default_factory=list)
    # Per sensor, (since, organization, status) in time order.
    sensors: dict[uuid.UUID, list[tuple[int, uuid.UUID, str]]] = field(default_factory=dict)
    cursors: dict[uuid.UUID, int] = field(default_factory=dict)
    short_windows: int = 0  # windows from a cursor off the grid, for the record
    ledger: dict[LedgerKey, Row] = field(default_factory=dict)
    closes: int = 0  # closes run so far: the number of the next one

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)


# --- The oracle ----------------------------------------------------------------------------


def active_at(world: World, org: uuid.UUID, instant: int) -> int:
    count = 0
    for history in world.sensors.values():
        current = None
        for since, owner, status in history:
            if since <= instant:
                current = (owner, status)
        count += current == (org, "active")
    return count


def oracle_close(world: World, now: int, window: int, grace: int, backfill: int | None) -> None:
    last_end = (now - grace) // window * window  # the greatest boundary with end + grace <= now
    sendable_from = now - STRIPE_LIMIT + STRIPE_MARGIN
    number = world.closes
    world.closes += 1

    def sendable(end: int) -> bool:  # Stripe's event timestamp is the window's last second
        return end - SECOND >= sendable_from

    for org in world.orgs:
        if not org.metered or org.id in world.cursors:
            continue
        if backfill is not None:
            start = backfill // window * window
        else:
            inside = [
                r for r in org.readings if r < last_end and sendable(r // window * window + window)
            ]
            start = min(inside) // window * window if inside else last_end
        world.cursors[org.id] = min(start, last_end)
        org.started_at_close = number
        org.unseen = []  # the new cursor's snapshot sees every committed reading

    for org in world.orgs:
        if not org.metered:
            continue
        start = world.cursors[org.id]
        if start >= last_end:
            continue
        late = sum(1 for r in org.unseen if r < start)
        while start < last_end:
            end = start // window * window + window
            world.short_windows += start % window != 0
            readings = bisect.bisect_left(org.readings, end) - bisect.bisect_left(
                org.readings, start
            )
            measured = {ACTIVE_SENSORS: active_at(world, org.id, end - 1), READINGS: readings}
            measured[READINGS] += late
            for meter, value in measured.items():
                status, reason = "pending", None
                if not sendable(end):
                    status, reason = "skipped", BEYOND
                elif meter == READINGS and value == 0:
                    status, reason = "skipped", EMPTY
                key = (org.id, meter, start)
                assert key not in world.ledger, f"oracle: window {at(start)} closed twice"
                row_late = late if meter == READINGS else 0
                world.ledger[key] = Row(end, value, status, reason, org.customer, row_late)
            late = 0  # billed in the first window of this close
            start = end
        world.cursors[org.id] = last_end
        org.unseen = []
        org.advanced_at_close = number

    for key, row in world.ledger.items():
        if row.status == "pending" and not sendable(row.window_end):
            world.ledger[key] = Row(
                row.window_end, row.value, "failed", None, row.customer, row.late
            )


# --- Generated usage -----------------------------------------------------------------------


def moment_between(rng: random.Random, low: int, high: int) -> int:
    """A time in [low, high), most often on or a microsecond or second next to a boundary."""
    if rng.random() < 0.3:
        return rng.randrange(low, high)
    grid = rng.choice(GRIDS)
    first = -(-low // grid) * grid
    if first >= high:
        return rng.randrange(low, high)
    boundary = first + grid * rng.randrange((high - 1 - first) // grid + 1)
    return min(max(boundary + rng.choice(OFFSETS), low), high - 1)


async def add_org(session: AsyncSession, world: World, customer: str | None) -> Org:
    org = Org(world.new_id(), customer)
    await session.execute(
        text("INSERT INTO organizations (id, name, stripe_customer_id) VALUES (:id, :n, :c)"),
        {"id": org.id, "n": f"org {len(world.orgs)}", "c": customer},
    )
    world.orgs.append(org)
    return org


async def add_sensor(
    session: AsyncSession, world: World, org: uuid.UUID, status: str, since: int
) -> uuid.UUID:
    sensor = world.new_id()
    await session.execute(
        text(
            "INSERT INTO sensors (id, organization_id, serial, status, status_changed_at,"
            " created_at) VALUES (:id, :org, :serial, :status, :at, :at)"
        ),
        {"id": sensor, "org": org, "serial": str(sensor), "status": status, "at": at(since)},
    )
    world.sensors[sensor] = [(since, org, status)]
    return sensor


async def change_sensor(
    session: AsyncSession, world: World, sensor: uuid.UUID, org: uuid.UUID, status: str, since: int
) -> None:
    await session.execute(
        text(
            "UPDATE sensors SET status = :status, organization_id = :org,"
            " status_changed_at = :at WHERE id = :id"
        ),
        {"status": status, "org": org, "at": at(since), "id": sensor},
    )
    world.sensors[sensor].append((since, org, status))


INSERT_READING = text(
    "INSERT INTO temperature_readings (organization_id, sensor_id, value_celsius,"
    " recorded_at, received_at) VALUES (:org, :sensor, 4.5, :at, :at)"
)


async def insert_readings(
    connection: AsyncSession | AsyncConnection, org: Org, moments: list[int]
) -> None:
    """Readings in the caller's transaction; `committed` records them once it commits."""
    if moments:
        rng = random.Random(moments[0])
        await connection.execute(
            INSERT_READING,
            [{"org": org.id, "sensor": rng.choice(org.readers), "at": at(m)} for m in moments],
        )


def committed(world: World, org: Org, moments: list[int]) -> None:
    """What the oracle knows of readings whose transaction has committed: the next close
    sees them."""
    org.readings.extend(moments)
    org.readings.sort()
    org.commits.extend((moment, world.closes) for moment in moments)
    org.unseen.extend(moments)


async def add_readings(session: AsyncSession, world: World, org: Org, moments: list[int]) -> None:
    """Readings in the session's transaction, which the caller commits before the next close."""
    await insert_readings(session, org, moments)
    committed(world, org, moments)


async def set_customer(session: AsyncSession, org: Org) -> None:
    await session.execute(
        text(
            "UPDATE organizations SET stripe_customer_id = :c, stripe_customer_deleted_at ="
            " CASE WHEN :deleted THEN TIMESTAMPTZ '2000-01-01 00:00:00+00' END WHERE id = :id"
        ),
        {"c": org.customer, "deleted": org.deleted, "id": org.id},
    )


async def populate_org(
    session: AsyncSession, world: World, org: Org, low: int, high: int, readings: int
) -> None:
    """Readers whose status flips several times in [low, high), and readings in it."""
    rng = world.rng
    for _ in range(rng.randint(1, 4)):
        since = moment_between(rng, low - DAY, low)
        sensor = await add_sensor(session, world, org.id, rng.choice(["active", "inactive"]), since)
        org.readers.append(sensor)
        await flip_status(session, world, sensor, since + 1, high, rng.randint(0, 5))
    await add_readings(
        session, world, org, [moment_between(rng, low, high) for _ in range(readings)]
    )


async def flip_status(
    session: AsyncSession, world: World, sensor: uuid.UUID, low: int, high: int, times: int
) -> None:
    rng = world.rng
    moments = sorted({moment_between(rng, low, high) for _ in range(times)})
    for moment in moments:
        owner, status = world.sensors[sensor][-1][1:]
        flipped = rng.choice(["inactive", "retired"]) if status == "active" else "active"
        await change_sensor(session, world, sensor, owner, flipped, moment)


async def add_phase(
    session: AsyncSession, world: World, low: int, high: int, movers: list[uuid.UUID]
) -> None:
    """What happens between two closes, all of it at times in [low, high)."""
    rng = world.rng
    for org in world.orgs:
        if org.readers and rng.random() < 0.8:
            count = rng.randint(0, 40)
            moments = [moment_between(rng, low, high) for _ in range(count)]
            await add_readings(session, world, org, moments)
        for sensor in org.readers:
            if rng.random() < 0.5:
                await flip_status(session, world, sensor, low, high, rng.randint(1, 3))
    for sensor in movers:  # sensors without readings change hands (and status) at boundaries
        if rng.random() < 0.7:
            owner = rng.choice([org.id for org in world.orgs])
            status = rng.choice(["active", "active", "inactive"])
            await change_sensor(
                session, world, sensor, owner, status, moment_between(rng, low, high)
            )
    if rng.random() < 0.5:
        org = await add_org(session, world, f"cus_{world.new_id().hex}")
        await populate_org(session, world, org, low, high, rng.randint(0, 30))
    for org in world.orgs:
        if org.customer is None and rng.random() < 0.3:
            org.customer = f"cus_{world.new_id().hex}"  # a customer comes late
            await set_customer(session, org)
        elif org.customer is not None and rng.random() < 0.15:
            org.deleted = not org.deleted  # deleted by Stripe, or restored
            await set_customer(session, org)


# --- Comparison ----------------------------------------------------------------------------


async def close_both(
    sessions: SessionFactory,
    world: World,
    now: int,
    window: int,
    grace: int,
    backfill: int | None,
) -> None:
    policy = ClosePolicy(
        window=timedelta(microseconds=window),
        grace=timedelta(microseconds=grace),
        backfill_start=None if backfill is None else at(backfill),
    )
    async with unit_of_work(sessions) as session:
        await close_windows(session, policy, at(now))
    oracle_close(world, now, window, grace, backfill)


async def close_with_a_transaction_open(
    sessions: SessionFactory,
    engine: AsyncEngine,
    world: World,
    close: tuple[int, int, int],
    history_start: int,
    backfill: int | None,
) -> None:
    """Close while another transaction holds readings it commits only after the close: in
    the windows closing now (the close's grace included), in older ones, or later."""
    window, now, grace = close
    rng = world.rng
    held: dict[uuid.UUID, list[int]] = {}
    async with engine.connect() as connection:
        await connection.begin()
        for org in world.orgs:
            if not org.readers or rng.random() < 0.4:
                continue
            moments = [
                rng.choice(
                    [
                        moment_between(rng, now - 2 * window - grace, now),
                        moment_between(rng, history_start, now),
                        moment_between(rng, now - grace, now + window),
                    ]
                )
                for _ in range(rng.randint(1, 6))
            ]
            await insert_readings(connection, org, moments)
            held[org.id] = moments
        await close_both(sessions, world, now, window, grace, backfill)
        await connection.commit()
    for org in world.orgs:
        committed(world, org, held.get(org.id, []))


async def compare(sessions: SessionFactory, world: World, context: str) -> None:
    async with sessions() as session:
        rows = list(await session.scalars(select(MeterReport)))
        cursors = {
            c.organization_id: micros_of(c.closed_through)
            for c in await session.scalars(select(MeteringCursor))
        }
    actual: dict[LedgerKey, Row] = {}
    for row in rows:
        start = micros_of(row.window_start)
        assert row.source == "window"
        assert row.identifier == f"sb.{row.organization_id}.{row.event_name}.{start // SECOND}"
        actual[(row.organization_id, row.event_name, start)] = Row(
            micros_of(row.window_end),
            row.value,
            row.status,
            row.skip_reason,
            row.stripe_customer_id,
            row.late_readings,
        )
    missing = {k: v for k, v in world.ledger.items() if k not in actual}
    extra = {k: v for k, v in actual.items() if k not in world.ledger}
    wrong = {k: (actual[k], v) for k, v in world.ledger.items() if k in actual and actual[k] != v}
    assert not missing, describe(context, missing, extra, wrong)
    assert not extra, describe(context, missing, extra, wrong)
    assert not wrong, describe(context, missing, extra, wrong)
    assert cursors == world.cursors, context
    check_coverage(world, actual, context)


def describe(
    context: str,
    missing: dict[LedgerKey, Row],
    extra: dict[LedgerKey, Row],
    wrong: dict[LedgerKey, tuple[Row, Row]],
) -> str:
    lines = [context]
    for label, found in (("missing", missing), ("extra", extra), ("sql, oracle", wrong)):
        for (org, meter, start), value in sorted(found.items(), key=lambda i: i[0][2])[:8]:
            lines.append(f"{label}: {org} {meter} {at(start).isoformat()} {value}")
    return "\n".join(lines)


def check_coverage(world: World, actual: dict[LedgerKey, Row], context: str) -> None:
    """Per organization: windows contiguous, none overlapping, both meters over the same
    windows; and every committed reading billed once, worked out from each reading alone:
    one the first close could see, if received in the metered span; one committed later, if
    a close of the organization ran after its commit (on time or by arrival), unless it is
    received after the cursor (its window is not closed yet)."""
    for org in world.orgs:
        spans = {
            meter: sorted(
                (start, row.window_end)
                for (owner, m, start), row in actual.items()
                if owner == org.id and m == meter
            )
            for meter in (ACTIVE_SENSORS, READINGS)
        }
        assert spans[ACTIVE_SENSORS] == spans[READINGS], context
        windows = spans[READINGS]
        if not windows:
            continue
        for (_, end), (start, _) in itertools.pairwise(windows):
            assert end == start, f"{context}: gap or overlap at {at(end)} / {at(start)}"
        first, last = windows[0][0], windows[-1][1]
        assert last == world.cursors[org.id], context
        started, advanced = org.started_at_close, org.advanced_at_close
        assert started is not None, context
        assert advanced is not None, context
        expected = sum(
            1
            for received, seen_at in org.commits
            if received < last
            and (first <= received if seen_at <= started else seen_at <= advanced)
        )
        total = sum(actual[(org.id, READINGS, start)].value for start, _ in windows)
        assert total == expected, f"{context}: {total} billed for {expected} readings"


# --- The scenario --------------------------------------------------------------------------


def window_lengths(rng: random.Random) -> list[int]:
    first = [HOUR, HOUR, DAY, DAY, HOUR] if rng.random() < 0.5 else [DAY, HOUR, HOUR, DAY, HOUR]
    return [*first, rng.choice([15 * MINUTE, 2 * HOUR, DAY, HOUR]), HOUR]


def step_before(rng: random.Random, window: int) -> int:
    """Time to the next close: most often enough for a window of the new length to end."""
    if window == DAY:
        return rng.choice([DAY, 2 * DAY, 3 * DAY]) + rng.randrange(-HOUR, HOUR)
    return rng.choice([0, 3 * MINUTE, HOUR, 5 * HOUR, 20 * HOUR]) + rng.randrange(SECOND)


def close_plan(rng: random.Random) -> list[tuple[int, int, int]]:
    """(window, now, grace) of each close. Often Stripe's edge (now - 35 days + the margin)
    sits one second before a boundary of the close's grid, so that the window ending there is
    the oldest sendable one; or a microsecond after (then it is not)."""
    plan: list[tuple[int, int, int]] = []
    now = BASE + rng.randrange(DAY)
    for number, window in enumerate(window_lengths(rng)):
        if number:
            now += step_before(rng, window)
        if rng.random() < 0.5:
            edge = -(-(now - STRIPE_LIMIT + STRIPE_MARGIN + SECOND) // window) * window
            now = edge + STRIPE_LIMIT - STRIPE_MARGIN - SECOND + rng.choice([0, 1, -1])
        if plan and now < plan[-1][1]:
            now = plan[-1][1]
        plan.append((window, now, rng.choice([0, 2 * MINUTE, 2 * MINUTE, 90 * MINUTE])))
    return plan


@pytest.mark.parametrize("seed", SEEDS)
async def test_closed_windows_match_an_oracle_written_from_the_rules(
    sessions: SessionFactory, engine: AsyncEngine, seed: int
) -> None:
    rng = random.Random(seed)
    world = World(rng)
    plan = close_plan(rng)
    now = plan[0][1]
    history_start = now - 38 * DAY
    backfill = now - rng.randrange(36 * DAY, 38 * DAY) if rng.random() < 0.3 else None
    # Readings at each close's Stripe edge, and in its grace.
    edge_moments = []
    for window, moment, grace in plan:
        edge = moment - STRIPE_LIMIT + STRIPE_MARGIN
        aligned = (edge + SECOND) // window * window
        edge_moments += [edge, edge + SECOND - 1, edge + SECOND, aligned - 1, aligned, aligned + 1]
        edge_moments += [moment - grace - 1]
    edge_moments = [m for m in edge_moments if history_start <= m < now]

    async with unit_of_work(sessions) as session:
        for index in range(rng.randint(3, 5)):
            customer = None if index == 0 else f"cus_{world.new_id().hex}"
            org = await add_org(session, world, customer)
            await populate_org(session, world, org, history_start, now, rng.randint(20, 120))
            await add_readings(
                session, world, org, rng.sample(edge_moments, len(edge_moments) // 2)
            )
        movers = [
            await add_sensor(session, world, rng.choice(world.orgs).id, "active", history_start)
            for _ in range(2)
        ]

    for number, (window, later, grace) in enumerate(plan):
        if later > now:
            async with unit_of_work(sessions) as session:
                await add_phase(session, world, now, later, movers)
        now = later
        if rng.random() < 0.5:
            await close_with_a_transaction_open(
                sessions, engine, world, (window, now, grace), history_start, backfill
            )
        else:
            await close_both(sessions, world, now, window, grace, backfill)
        await compare(sessions, world, f"seed {seed}, close {number}, window {window // SECOND}")
    # Every seed's transactions held across closes left readings for a later close to bill.
    assert sum(row.late for row in world.ledger.values()) > 0
