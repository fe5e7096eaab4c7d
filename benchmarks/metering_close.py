"""Closing one usage window for every organization, vs the sum of its bare parts, same run.

    .venv/bin/python -m benchmarks.metering_close [--organizations 10000] [--readings 10000000]
        [--days 30] [--rounds 5] [--redis-url redis://127.0.0.1:6379/14] [--explain]

Builds a throwaway database (migrated with `sensor_billing.db.migrate.upgrade`) holding
`--organizations` organizations with a Stripe customer each, 2-4 sensors each (3 on average) and
`--readings` temperature readings spread evenly over the last `--days` days (received_at in time
order, each reading on a random sensor), all generated with set-based SQL. Every organization's
metering cursor is put one window before the last closable one, so a close has exactly one
window (METER_WINDOW_SECONDS=3600, grace 120 s) to write for every organization. As in
production, the readings of that window commit after the snapshot the previous close stored
on the cursors (`closed_snapshot`), so the close's scan for late commits reads them all (and
finds none late), the work it does at every close.

Measured, median of `--rounds` rounds after one warm-up round, state reset between rounds (the
ledger emptied, cursors put back, the Redis db flushed):

  service  close_windows   `metering.service.close_windows` in one `unit_of_work` (commit included)
  service  sweep           `metering.outbox.sweep`: every pending ledger row becomes a job
  bare     aggregate       count readings per organization in the window (by received_at)
  bare     insert          INSERT ... SELECT of 2 ledger rows per organization into meter_reports
  bare     addBulk         bullmq `Queue.addBulk` of 2 jobs per organization, meter:report shaped

"close" = close_windows + sweep (closing the window AND enqueuing its jobs). Target (issue):
close within 1.5x the bare parts (aggregate + insert + addBulk). The script also checks what one
sweep with its default batch size enqueues. Uses the Redis db of `--redis-url`, flushed before,
between rounds and after: give it a db nobody else uses (the test suite flushes db 15). At full
size it takes about 1 minute here (61 s, 33 s of it generating the data). It also prints the
peak RSS of this process while the worker's code runs in it: close_windows, the sweep of every
pending row at once, and sweeps of SWEEP_BATCH rows as the worker runs them (target: under
200 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from redis.asyncio import Redis

from benchmarks._support import (
    PeakRss,
    create_database,
    drop_database,
    dsn,
    peak_rss_mb,
    reset_peak_rss,
    timed_execute,
)
from sensor_billing.db import create_engine, create_session_factory, migrate, unit_of_work
from sensor_billing.db.session import SessionFactory
from sensor_billing.jobs.connection import open_queue
from sensor_billing.jobs.registry import (
    METER_REPORT_JOB_OPTIONS,
    JobNames,
    MeterReportJobData,
    QueueNames,
)
from sensor_billing.metering import repository
from sensor_billing.metering.outbox import SWEEP_BATCH, sweep
from sensor_billing.metering.service import ClosePolicy, close_windows
from sensor_billing.metering.windows import last_closable_end

TARGET_RATIO = 1.5
WINDOW = timedelta(seconds=3600)
GRACE = timedelta(seconds=120)
POLICY = ClosePolicy(window=WINDOW, grace=GRACE)
READINGS_FK = "temperature_readings_organization_id_sensor_id_fkey"
READINGS_INDEX = "temperature_readings_received_at_organization_id_idx"
XACT_INDEX = "temperature_readings_xact_id_idx"

BARE_AGGREGATE = """
SELECT organization_id, count(*) AS value
  FROM temperature_readings
 WHERE received_at >= $1 AND received_at < $2
 GROUP BY organization_id
"""

BARE_INSERT = """
INSERT INTO meter_reports (organization_id, event_name, window_start, window_end, value,
                           stripe_customer_id, identifier)
SELECT o.id, m.event_name, $1::timestamptz, $2::timestamptz, 1, o.stripe_customer_id,
       'bare.' || o.id || '.' || m.event_name || '.' || extract(epoch FROM $1::timestamptz)::bigint
  FROM organizations o
 CROSS JOIN (VALUES ('active_sensors'), ('temperature_readings')) AS m(event_name)
"""


# -- data ------------------------------------------------------------------------------------


READINGS_BETWEEN = """
INSERT INTO temperature_readings (organization_id, sensor_id, value_celsius,
                                  recorded_at, received_at)
SELECT m.organization_id, m.sensor_id, round((2 + random() * 6)::numeric, 2),
       r.at - random() * interval '30 seconds', r.at
  FROM (SELECT $1::timestamptz + g * (($2::timestamptz - $1::timestamptz) / $3::bigint) AS at,
               floor(random() * $4::int)::int AS slot
          FROM generate_series($5::bigint, $6::bigint - 1) AS g) r
  JOIN bench_sensor_slots m ON m.slot = r.slot
"""


async def generate(
    url: str, organizations: int, readings: int, days: int, now: datetime, window_start: datetime
) -> str:
    """Organizations, sensors and readings with set-based SQL; the indexes and the foreign key
    of the readings are rebuilt after the bulk load (all the migrations' own). The readings
    from `window_start` on are inserted after the rest has committed; returns the snapshot
    taken in between (what the close before them would have stored on the cursors)."""
    connection = await asyncpg.connect(dsn(url))
    since = now - timedelta(days=days)
    try:
        await connection.execute("SET synchronous_commit = off; SET maintenance_work_mem = '512MB'")
        await timed_execute(
            connection,
            f"{organizations} organizations",
            "INSERT INTO organizations (name, stripe_customer_id)"
            " SELECT 'org ' || n, 'cus_' || n FROM generate_series(1, $1::int) AS n",
            organizations,
        )
        # Sensors (2-4 per organization) numbered 0..S-1 in a helper table, so each reading
        # can pick a random sensor, and with it its organization, with one hash join.
        await connection.execute(
            "CREATE UNLOGGED TABLE bench_sensor_slots"
            " (slot int PRIMARY KEY, organization_id uuid NOT NULL, sensor_id uuid NOT NULL)"
        )
        await timed_execute(
            connection,
            "sensors (2-4 each; the trigger fills status periods)",
            """
            WITH created AS (
                INSERT INTO sensors (organization_id, serial, status, status_changed_at,
                                     created_at)
                SELECT o.id, 'sn-' || k, 'active', $1, $1
                  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM organizations) o
                 CROSS JOIN LATERAL generate_series(1, 2 + (o.n % 3)::int) AS k
                RETURNING id, organization_id
            )
            INSERT INTO bench_sensor_slots
            SELECT row_number() OVER () - 1, organization_id, id FROM created
            """,
            since - timedelta(days=1),
        )
        slots = int(await connection.fetchval("SELECT count(*) FROM bench_sensor_slots"))
        await connection.execute(
            f"ALTER TABLE temperature_readings DROP CONSTRAINT {READINGS_FK};"
            f" DROP INDEX {READINGS_INDEX}; DROP INDEX {XACT_INDEX}"
        )
        step = (now - since) / readings
        split = min(readings, -(-(window_start - since) // step))  # first reading in the window
        await timed_execute(
            connection,
            f"{split} readings over {days} days, before the window",
            READINGS_BETWEEN,
            since,
            now,
            readings,
            slots,
            0,
            split,
        )
        snapshot = str(await connection.fetchval("SELECT CAST(pg_current_snapshot() AS text)"))
        await timed_execute(
            connection,
            f"{readings - split} readings from the window on",
            READINGS_BETWEEN,
            since,
            now,
            readings,
            slots,
            split,
            readings,
        )
        await timed_execute(
            connection,
            "index on (received_at, organization_id)",
            f"CREATE INDEX {READINGS_INDEX} ON temperature_readings (received_at, organization_id)",
        )
        await timed_execute(
            connection,
            "index on xact_id",
            f"CREATE INDEX {XACT_INDEX} ON temperature_readings (xact_id)"
            " WHERE xact_id IS NOT NULL",
        )
        await timed_execute(
            connection,
            "foreign key (organization_id, sensor_id), validated",
            f"ALTER TABLE temperature_readings ADD CONSTRAINT {READINGS_FK}"
            " FOREIGN KEY (organization_id, sensor_id)"
            " REFERENCES sensors (organization_id, id) ON DELETE CASCADE",
        )
        await connection.execute("DROP TABLE bench_sensor_slots")
        await timed_execute(connection, "VACUUM ANALYZE", "VACUUM ANALYZE")
        return snapshot
    finally:
        await connection.close()


# -- one round -------------------------------------------------------------------------------


@dataclass
class Bench:
    url: str
    redis_url: str
    now: datetime
    window_start: datetime
    window_end: datetime
    organizations: int
    # What the close before the window stored on the cursors: it did not see the window's
    # readings, so the close measured here scans them for late commits.
    snapshot: str
    admin: asyncpg.Connection
    redis: Redis
    sessions: SessionFactory
    queue: Any

    async def reset(self) -> None:
        """Empty ledger, every cursor one window before the last closable end (with the
        snapshot of the close that put it there), empty Redis."""
        await self.admin.execute("TRUNCATE meter_reports")
        await self.admin.execute(
            "UPDATE metering_cursors SET closed_through = $1, closed_snapshot = $2",
            self.window_start,
            self.snapshot,
        )
        await self.admin.execute("VACUUM ANALYZE metering_cursors, meter_reports")
        await self.redis.flushdb()


async def timed(action: Callable[[], Awaitable[object]]) -> tuple[float, object]:
    started = time.perf_counter()
    result = await action()
    return (time.perf_counter() - started) * 1000, result


def bulk_jobs(organization_ids: list[uuid.UUID], timestamp: int) -> list[dict[str, Any]]:
    """meter:report jobs shaped like the sweep's: validated data, options, job id."""
    jobs: list[dict[str, Any]] = []
    for organization_id in organization_ids:
        for event_name in ("active_sensors", "temperature_readings"):
            data = MeterReportJobData(
                organization_id=organization_id,
                event_name=event_name,
                value=1,
                timestamp=timestamp,
            )
            jobs.append(
                {
                    "name": JobNames.METER_REPORT.value,
                    "data": data.to_wire(),
                    "opts": {
                        **METER_REPORT_JOB_OPTIONS,
                        "jobId": f"bare.{organization_id}.{event_name}.{timestamp}",
                    },
                }
            )
    return jobs


# This process's peak RSS while the worker's code ran (the process's own data included).
PEAK_CLOSE = "peak RSS: close_windows"
PEAK_SWEEP = "peak RSS: sweep of every pending row at once"
PEAK_DEFAULT_SWEEP = "peak RSS: sweeps of SWEEP_BATCH rows, as the worker runs them"


async def one_round(bench: Bench, jobs: list[dict[str, Any]]) -> dict[str, float]:
    samples: dict[str, float] = {}
    await bench.reset()

    async def close() -> Any:
        async with unit_of_work(bench.sessions) as session:
            return await close_windows(session, POLICY, bench.now)

    reset_peak_rss()
    samples["close_windows"], summary = await timed(close)
    samples[PEAK_CLOSE] = peak_rss_mb()
    reset_peak_rss()
    samples["sweep"], swept = await timed(
        lambda: sweep(bench.sessions, bench.queue, now=datetime.now(UTC), batch=10**9)
    )
    samples[PEAK_SWEEP] = peak_rss_mb()
    if getattr(summary, "closed_through", None) != bench.window_end:
        raise RuntimeError(f"close_windows closed through an unexpected end: {summary}")
    samples["rows created"] = float(getattr(summary, "rows_created", 0))
    samples["rows pending"] = float(getattr(summary, "rows_by_status", {}).get("pending", 0))
    samples["jobs enqueued"] = float(getattr(swept, "enqueued", 0))
    samples["jobs in Redis"] = float(await bench.queue.getJobCountByTypes("waiting"))

    await bench.reset()
    samples["bare aggregate"], groups = await timed(
        lambda: bench.admin.fetch(BARE_AGGREGATE, bench.window_start, bench.window_end)
    )
    samples["organizations with readings"] = float(len(groups))  # type: ignore[arg-type]

    async def insert() -> object:
        async with bench.admin.transaction():
            return await bench.admin.execute(BARE_INSERT, bench.window_start, bench.window_end)

    samples["bare insert"], _ = await timed(insert)
    samples["bare addBulk"], _ = await timed(lambda: bench.queue.addBulk(jobs))
    return samples


async def default_batch_check(bench: Bench) -> tuple[list[int], float]:
    """What the sweep does with its default batch when more rows are pending than it; and this
    process's peak RSS during those sweeps."""
    await bench.reset()
    async with unit_of_work(bench.sessions) as session:
        await close_windows(session, POLICY, bench.now)
    enqueued: list[int] = []
    reset_peak_rss()
    for _ in range(3):
        result = await sweep(bench.sessions, bench.queue, now=datetime.now(UTC))
        enqueued.append(result.enqueued)
    return enqueued, peak_rss_mb()


async def explain_close(bench: Bench) -> list[str]:
    """EXPLAIN ANALYZE of the close statement, rolled back."""
    await bench.reset()
    sendable_from = bench.now - timedelta(days=35) + timedelta(hours=1)
    snapshots, late_from, running = await bench.admin.fetchrow(
        str(repository.LATE_CANDIDATES).replace(":last_end", "$1"), bench.window_end
    )
    sql = str(repository.CLOSE_WINDOWS)
    names = ("window_seconds", "last_end", "sendable_from", "snapshots", "late_from", "running")
    for index, name in enumerate(names, start=1):
        sql = sql.replace(f":{name}", f"${index}")
    transaction = bench.admin.transaction()
    await transaction.start()
    try:
        # As the service runs it (repository.lock_closing): the JIT's compile time is not
        # what this statement costs there.
        await bench.admin.execute("SET LOCAL jit = off")
        rows = await bench.admin.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql,
            WINDOW.total_seconds(),
            bench.window_end,
            sendable_from,
            snapshots,
            late_from,
            running,
        )
    finally:
        await transaction.rollback()
    return [str(row[0]) for row in rows]


# -- main ------------------------------------------------------------------------------------


async def main(arguments: argparse.Namespace) -> int:
    started = time.perf_counter()
    now = datetime.now(UTC)
    window_end = last_closable_end(now, WINDOW, GRACE)
    window_start = window_end - WINDOW
    url = await create_database("sb_bench_close")
    redis: Redis = Redis.from_url(arguments.redis_url)
    await redis.flushdb()
    queue: Any = None
    admin: asyncpg.Connection | None = None
    engine = create_engine(url, pool_size=2)
    try:
        print(f"\ngenerating data in {url.rsplit('/', 1)[-1]}:", flush=True)
        await asyncio.to_thread(migrate.upgrade, url)
        snapshot = await generate(
            url, arguments.organizations, arguments.readings, arguments.days, now, window_start
        )
        generated = time.perf_counter() - started
        print(f"  {'total (migration included)':<52} {generated:>7.1f} s", flush=True)
        admin = await asyncpg.connect(dsn(url))
        await admin.execute(
            "INSERT INTO metering_cursors (organization_id, closed_through, closed_snapshot)"
            " SELECT id, $1, $2 FROM organizations",
            window_start,
            snapshot,
        )
        queue = open_queue(arguments.redis_url, QueueNames.METER_REPORTING)
        bench = Bench(
            url=url,
            redis_url=arguments.redis_url,
            now=now,
            window_start=window_start,
            window_end=window_end,
            organizations=arguments.organizations,
            snapshot=snapshot,
            admin=admin,
            redis=redis,
            sessions=create_session_factory(engine),
            queue=queue,
        )
        organization_ids = [
            row[0] for row in await admin.fetch("SELECT id FROM organizations ORDER BY id")
        ]
        jobs = bulk_jobs(organization_ids, int(window_end.timestamp()) - 1)
        print("\nwarm-up round, then measuring", flush=True)
        measuring_from_mb = reset_peak_rss()
        await one_round(bench, jobs)
        samples = [await one_round(bench, jobs) for _ in range(arguments.rounds)]
        batches, default_sweep_peak = await default_batch_check(bench)
        plan = await explain_close(bench) if arguments.explain else []
        readings_in_window = int(
            await admin.fetchval(
                "SELECT count(*) FROM temperature_readings"
                " WHERE received_at >= $1 AND received_at < $2",
                window_start,
                window_end,
            )
        )
    finally:
        if admin is not None:
            await admin.close()
        if queue is not None:
            await queue.close()
        await engine.dispose()
        await redis.flushdb()
        await redis.aclose()
        await drop_database(url)

    median = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    spread = {key: (min(s[key] for s in samples), max(s[key] for s in samples)) for key in median}
    close_ms = [s["close_windows"] + s["sweep"] for s in samples]
    bare_ms = [s["bare aggregate"] + s["bare insert"] + s["bare addBulk"] for s in samples]
    ratios = [c / b for c, b in zip(close_ms, bare_ms, strict=True)]
    organizations = arguments.organizations

    print(
        f"\nclosing one {int(WINDOW.total_seconds())} s window for {organizations} organizations"
        f" ({arguments.readings} readings over {arguments.days} days,"
        f" {readings_in_window} in the window); median of {arguments.rounds} rounds, ms"
    )
    print(f"  window [{window_start.isoformat()}, {window_end.isoformat()})")
    print(
        f"  ledger rows created {median['rows created']:.0f}"
        f" (pending {median['rows pending']:.0f}),"
        f" jobs enqueued by the sweep {median['jobs enqueued']:.0f}"
        f" (waiting in Redis {median['jobs in Redis']:.0f});"
        f" organizations with readings in the window {median['organizations with readings']:.0f}"
    )
    print(f"\n  {'measurement':<52} {'median':>9} {'min':>9} {'max':>9}")
    rows = (
        ("service  close_windows (one transaction, commit)", "close_windows"),
        ("service  sweep (pending rows -> jobs)", "sweep"),
        ("bare     one-hour aggregate", "bare aggregate"),
        (f"bare     INSERT ... SELECT {2 * organizations} ledger rows", "bare insert"),
        (f"bare     Queue.addBulk {len(jobs)} jobs", "bare addBulk"),
    )
    for label, key in rows:
        low, high = spread[key]
        print(f"  {label:<52} {median[key]:>9.1f} {low:>9.1f} {high:>9.1f}")
    print(
        f"  {'close = close_windows + sweep':<52} {statistics.median(close_ms):>9.1f}"
        f" {min(close_ms):>9.1f} {max(close_ms):>9.1f}"
    )
    print(
        f"  {'bare parts = aggregate + insert + addBulk':<52} {statistics.median(bare_ms):>9.1f}"
        f" {min(bare_ms):>9.1f} {max(bare_ms):>9.1f}"
    )
    ratio = statistics.median(ratios)
    close_windows_ratio = statistics.median(
        s["close_windows"] / (s["bare aggregate"] + s["bare insert"]) for s in samples
    )
    sweep_ratio = statistics.median(s["sweep"] / s["bare addBulk"] for s in samples)
    print(
        f"\n  close_windows / (aggregate + insert)  {close_windows_ratio:>6.2f}x"
        f"\n  sweep / addBulk                       {sweep_ratio:>6.2f}x"
        f"\n  close / bare parts                    {ratio:>6.2f}x"
        f" (per-round ratios {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"\n  target: close within {TARGET_RATIO}x the bare parts: {verdict} ({ratio:.2f}x)")
    # The worker's code ran in this process: its peak while each part ran, the largest over
    # the rounds (the process held about `measuring_from_mb` before they began).
    rss = PeakRss()
    rss.readings[PEAK_CLOSE] = max(sample[PEAK_CLOSE] for sample in samples)
    rss.readings[PEAK_SWEEP] = max(sample[PEAK_SWEEP] for sample in samples)
    rss.readings[PEAK_DEFAULT_SWEEP] = default_sweep_peak
    rss.print()
    print(f"    (this process held {measuring_from_mb:.1f} MB before the rounds began)")
    pending = median["rows pending"]
    print(
        f"\n  default-batch sweep (SWEEP_BATCH={SWEEP_BATCH}) with {pending:.0f} pending rows,"
        f" three sweeps in a row enqueued: {', '.join(str(n) for n in batches)}"
    )
    if sum(batches) < pending:
        print(
            f"  NOTE: {pending - sum(batches):.0f} pending rows got no job: each sweep re-reads"
            " the oldest pending rows, which already have jobs"
        )
    if plan:
        print("\nEXPLAIN ANALYZE of the close statement:")
        print("\n".join(f"  {line}" for line in plan))
    print(f"\ntotal runtime {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--organizations", type=int, default=10_000)
    parser.add_argument("--readings", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--explain", action="store_true", help="print EXPLAIN ANALYZE of the close statement"
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
