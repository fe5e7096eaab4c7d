"""Reported meter events per second through the worker and the v2 stream, vs baselines, same run.

    .venv/bin/python -m benchmarks.metering_reporting [--events 5000] [--stream-events 20000]
        [--concurrency 20] [--rounds 3] [--redis-url redis://127.0.0.1:6379/13]

Runs the local Stripe stand-in (`sensor_billing.devtools.stripe_standin.run_in_thread`, in a
thread of this process, as the tests do) and a throwaway database (migrated), and per round,
interleaved so machine noise hits every measurement alike:

  baseline  bullmq no-op     a bullmq `Worker` (concurrency C, after
                             `fix_bullmq_block_timeouts()`) processing `--events` no-op jobs
                             carrying the meter job options; jobs/s from first to last completion
  baseline  SDK calls        `send_meter_event` through the stripe SDK client to the stand-in,
                             C at a time, no database, no queue: what the SDK and the in-process
                             stand-in cost on their own (they share this process's GIL)
  baseline  bullmq + SDK     the no-op baseline's Worker, each job making one such SDK call
                             (no ledger, no rate limit): the least a one-event-per-call job
                             does, so its ratio to no-op bounds what the worker can reach
  measured  worker           `MeteringWorker(settings, concurrency=C)`: `--events` pending ledger
                             rows (one per customer and meter); `start()` sweeps them into jobs,
                             the worker reports them one event per call; events/s from first to
                             last completed `meter:report` job; all rows must end `sent`. Its
                             account limit is BENCH_RATE_LIMIT, far above Stripe's 1,000/s, so
                             that the limit does not cap what is measured (the limiter runs)
  measured  stream           `stream_backlog` through `MeterEventStream` (v2, 100 per request)
                             over `--stream-events` pending rows

With `--standin-process` the stand-in runs in a child process instead (read through its
control API), so its CPU is not charged to the worker's GIL, as real Stripe's would not be.

Beside each rate it prints this process's CPU time per event over the same span (from
`time.process_time`): where the time goes. In a VM whose cores are busy with other work, CPU
time grows too, so neither column is a clean reading on a loaded machine; ratios within a round
are the least affected.

Each measured run is checked: the stand-in accepted exactly the rows' identifiers, each once,
and every row is `sent`. Targets (issue): worker >= 0.5x the bullmq no-op rate with one worker
process; stream >= 5,000 events/s; the worker's peak RSS (this process's, from a fresh peak at
each worker run: `_support.reset_peak_rss`) under 200 MB. MISSES are printed; the exit code
is 0 either way (1 only if a correctness check fails). Uses the Redis db of `--redis-url`,
flushed before, between runs and after: give it a db nobody else uses (the test suite flushes
db 15). At the defaults it takes
about 2.5 minutes here (154 s; 115 s with `--standin-process`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import stripe
from bullmq import Queue, Worker
from redis.asyncio import Redis

from benchmarks._support import (
    PeakRss,
    create_database,
    drop_database,
    dsn,
    free_port,
    peak_rss_mb,
    reset_peak_rss,
)
from sensor_billing.db import create_engine, create_session_factory, migrate
from sensor_billing.devtools.stripe_standin import DEFAULT_API_KEY, RunningStandin, run_in_thread
from sensor_billing.jobs.connection import fix_bullmq_block_timeouts
from sensor_billing.jobs.registry import METER_REPORT_JOB_OPTIONS, JobNames
from sensor_billing.jobs.worker import MeteringWorker
from sensor_billing.metering.stream import MeterEventStream, stream_backlog
from sensor_billing.metering.windows import last_closable_end
from sensor_billing.settings import Settings, load_settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client
from sensor_billing.stripe_api.meter_events import MeterEvent, send_meter_event

WORKER_TARGET = 0.5
STREAM_TARGET = 5000.0
# The account limit the worker runs under, above what settings accept (Stripe's 1,000/s, which
# the limiter keeps 5% under): this measures what each event costs, and at 0.5x of a no-op rate
# of 2,000/s and more the limit itself would be the cap. The limiter still runs for every
# event. (`model_copy` skips the settings' range check.)
BENCH_RATE_LIMIT = 100_000.0
WINDOW = timedelta(hours=1)
EVENT_NAMES = ("active_sensors", "temperature_readings")

# `count` pending window rows: for each window (newest first) every organization's two meters,
# so (customer, meter) pairs repeat only across windows.
PENDING_ROWS = """
WITH orgs AS (
    SELECT id, stripe_customer_id, row_number() OVER (ORDER BY id) AS n FROM organizations
), windows AS (
    SELECT k, $1::timestamptz - k * interval '1 hour' AS window_start
      FROM generate_series(0, $2::int - 1) AS k
)
INSERT INTO meter_reports (organization_id, event_name, window_start, window_end, value,
                           stripe_customer_id, identifier, source, status, created_at)
SELECT o.id, m.event_name, w.window_start, w.window_start + interval '1 hour', 1 + o.n % 50,
       o.stripe_customer_id,
       'sb.' || o.id || '.' || m.event_name || '.' || extract(epoch FROM w.window_start)::bigint,
       'window', 'pending', now() - interval '1 minute'
  FROM windows w
 CROSS JOIN orgs o
 CROSS JOIN (VALUES ('active_sensors'), ('temperature_readings')) AS m(event_name)
 ORDER BY w.k, o.n, m.event_name
 LIMIT $3
RETURNING identifier
"""


@dataclass(frozen=True)
class Run:
    events: int
    seconds: float
    # This process's CPU time over the same span: where it goes, beside how fast. The loop is
    # CPU-bound, so rate ratios follow CPU ratios when the process has a core to itself.
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_event(self) -> float:
        return self.cpu_seconds * 1000 / self.events if self.events else 0.0


class CheckFailedError(Exception):
    pass


class Standin:
    """The stand-in in a thread of this process (as the tests run it) or in a child process
    (`python -m sensor_billing.devtools.stripe_standin`, read through its control API), so
    its CPU does not share this process's GIL, as Stripe's would not."""

    def __init__(self, in_process: bool) -> None:
        self.running: RunningStandin | None = None
        self.process: subprocess.Popen[bytes] | None = None
        if in_process:
            self.running = run_in_thread()
            self.url = self.running.url
        else:
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sensor_billing.devtools.stripe_standin",
                    *("--port", str(port), "--log-level", "warning"),
                ],
                stdout=subprocess.DEVNULL,
            )

    async def ready(self) -> None:
        if self.process is None:
            return
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                if self.process.poll() is not None:
                    raise RuntimeError("the stand-in process exited during start-up")
                try:
                    await client.get(f"{self.url}/_standin/config")
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise RuntimeError("the stand-in process did not start")

    async def reset(self) -> None:
        if self.running is not None:
            self.running.state.reset()
            return
        async with httpx.AsyncClient() as client:
            (await client.post(f"{self.url}/_standin/reset")).raise_for_status()

    async def accepted_identifiers(self) -> list[str]:
        """The identifier of every accepted event, in arrival order."""
        if self.running is not None:
            return [event.identifier for event in self.running.state.accepted_events()]
        async with httpx.AsyncClient(timeout=60) as client:
            answer = await client.get(f"{self.url}/_standin/state")
            answer.raise_for_status()
            return [str(event["identifier"]) for event in answer.json()["events"]]

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Completions:
    """First and last completion times of jobs named `name` with an id in `ids` (None: any)."""

    def __init__(self, expected: int, name: str | None = None, ids: set[str] | None = None):
        self.expected = expected
        self.name = name
        self.ids = ids
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.failed: list[str] = []
        self.done = asyncio.Event()

    def _counts(self, job: Any) -> bool:
        return (self.name is None or job.name == self.name) and (
            self.ids is None or str(job.id) in self.ids
        )

    def completed(self, job: Any, result: Any) -> None:
        if self._counts(job):
            self.times.append(time.perf_counter())
            self.cpu_times.append(time.process_time())
            if len(self.times) >= self.expected:
                self.done.set()

    def failed_job(self, job: Any, error: Any) -> None:
        if self._counts(job):
            self.failed.append(f"{job.id}: {error}")

    async def wait(self, limit_seconds: float, label: str) -> Run:
        try:
            await asyncio.wait_for(self.done.wait(), limit_seconds)
        except TimeoutError:
            raise CheckFailedError(
                f"{label}: {len(self.times)} of {self.expected} jobs completed in"
                f" {limit_seconds:.0f} s"
                f" ({len(self.failed)} failed: {self.failed[:3]})"
            ) from None
        return Run(
            len(self.times) - 1,
            self.times[-1] - self.times[0],
            self.cpu_times[-1] - self.cpu_times[0],
        )


async def queue_baseline(
    redis_url: str,
    events: int,
    concurrency: int,
    limit_seconds: float,
    process: Callable[[Any, str], Awaitable[None]],
    label: str,
) -> Run:
    """A bullmq `Worker` running `process` over `events` jobs with the meter job options."""
    queue: Any = Queue("bench-baseline", {"connection": redis_url})
    await queue.addBulk(
        [
            {"name": "baseline", "data": {"index": index}, "opts": dict(METER_REPORT_JOB_OPTIONS)}
            for index in range(events)
        ]
    )
    completions = Completions(events)
    worker: Any = Worker(
        "bench-baseline", process, {"connection": redis_url, "concurrency": concurrency}
    )
    worker.on("completed", completions.completed)
    worker.on("failed", completions.failed_job)
    try:
        return await completions.wait(limit_seconds, label)
    finally:
        await worker.close()
        await queue.close()


async def noop_baseline(redis_url: str, events: int, concurrency: int, limit_seconds: float) -> Run:
    async def process(job: Any, token: str) -> None:
        return None

    return await queue_baseline(
        redis_url, events, concurrency, limit_seconds, process, "bullmq no-op"
    )


async def queue_and_sdk_baseline(
    redis_url: str,
    client: stripe.StripeClient,
    customers: list[str],
    concurrency: int,
    limit_seconds: float,
    tag: str,
) -> Run:
    """The least a one-event-per-call job does: bullmq jobs that each make one SDK call (no
    ledger, no rate limit), one event per (customer, meter)."""
    events = sdk_events(customers, f"queue.{tag}")

    async def process(job: Any, token: str) -> None:
        await send_meter_event(client, events[int(job.data["index"])])

    return await queue_baseline(
        redis_url, len(events), concurrency, limit_seconds, process, "bullmq + SDK call"
    )


def sdk_events(customers: list[str], tag: str) -> list[MeterEvent]:
    timestamp = int(time.time()) - 60
    return [
        MeterEvent(name, customer, 1, f"bench.{tag}.{customer}.{name}", timestamp)
        for customer in customers
        for name in EVENT_NAMES
    ]


async def sdk_baseline(
    client: stripe.StripeClient, customers: list[str], concurrency: int, tag: str
) -> Run:
    """One v1 meter event per (customer, meter), C calls in flight, straight through the SDK."""
    events = sdk_events(customers, f"sdk.{tag}")
    pending = iter(events)

    async def caller() -> None:
        for event in pending:
            await send_meter_event(client, event)

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return Run(len(events), time.perf_counter() - started, time.process_time() - cpu_started)


async def check_accepted(standin: Standin, identifiers: list[str], label: str) -> None:
    accepted = await standin.accepted_identifiers()
    counts = Counter(accepted)
    twice = [identifier for identifier, count in counts.items() if count > 1]
    missing = set(identifiers) - set(counts)
    unexpected = set(counts) - set(identifiers)
    if len(accepted) != len(identifiers) or twice or missing or unexpected:
        raise CheckFailedError(
            f"{label}: the stand-in accepted {len(accepted)} events for {len(identifiers)} rows;"
            f" {len(twice)} identifiers more than once, {len(missing)} missing,"
            f" {len(unexpected)} unexpected"
        )


async def check_sent(connection: asyncpg.Connection, identifiers: list[str], label: str) -> None:
    rows = await connection.fetch(
        "SELECT status, count(*) FROM meter_reports WHERE identifier = ANY($1::text[])"
        " GROUP BY status",
        identifiers,
    )
    statuses = {str(row[0]): int(row[1]) for row in rows}
    if statuses != {"sent": len(identifiers)}:
        raise CheckFailedError(f"{label}: ledger rows by status {statuses}, expected all sent")


@dataclass
class Bench:
    url: str
    redis_url: str
    admin: asyncpg.Connection
    redis: Redis
    standin: Standin
    settings: Settings
    concurrency: int
    timeout: float
    organizations: int
    next_window: datetime
    slow_stops: int = 0
    # This process's peak RSS while a MeteringWorker ran (from a fresh peak each run), the most.
    worker_peak_mb: float = 0.0

    async def stop_worker(self, worker: MeteringWorker) -> None:
        """`worker.stop()`; if it still waits after 3 s, wake bullmq's blocking fetch.

        bullmq 3.4.4's `Worker.close()` waits for its marker BZPOPMIN, re-armed until the next
        delayed job (here the close-windows scheduler, minutes away; upstream issue #4597):
        stops of 455 s were seen. One ZADD on the marker key wakes it.
        """
        stopping = asyncio.ensure_future(worker.stop())
        done, _ = await asyncio.wait({stopping}, timeout=3)
        if not done:
            self.slow_stops += 1
            await self.redis.zadd(worker.queue.toKey("marker"), {"0": 0})
        await stopping

    async def pending_rows(self, count: int) -> list[str]:
        """`count` new pending rows in windows no earlier round used."""
        windows = -(-count // (2 * self.organizations))
        rows = await self.admin.fetch(PENDING_ROWS, self.next_window, windows, count)
        self.next_window -= WINDOW * windows
        await self.admin.execute("ANALYZE meter_reports")
        return [str(row[0]) for row in rows]

    async def worker_run(self, identifiers: list[str]) -> Run:
        await self.standin.reset()
        reset_peak_rss()  # not the rows generated, the baselines or the stream before it
        worker = MeteringWorker(self.settings, concurrency=self.concurrency)
        completions = Completions(len(identifiers), JobNames.METER_REPORT.value, set(identifiers))
        try:
            await worker.start()
            # start() returns right after creating the bullmq Worker: no job has finished yet.
            worker.worker.on("completed", completions.completed)
            worker.worker.on("failed", completions.failed_job)
            run = await completions.wait(self.timeout, "worker")
        finally:
            await self.stop_worker(worker)
        self.worker_peak_mb = max(self.worker_peak_mb, peak_rss_mb())
        await check_sent(self.admin, identifiers, "worker")
        await check_accepted(self.standin, identifiers, "worker")
        return run

    async def stream_run(self, identifiers: list[str]) -> Run:
        await self.standin.reset()
        engine = create_engine(self.url, pool_size=2)
        http = create_http_client()
        client = create_stripe_client(self.settings, http_client=http)

        def session_client(token: str) -> stripe.StripeClient:
            return create_stripe_client(self.settings, api_key=token, http_client=http)

        stream = MeterEventStream(client, session_client)
        try:
            started, cpu_started = time.perf_counter(), time.process_time()
            sent = await stream_backlog(
                create_session_factory(engine),
                stream,
                clock=lambda: datetime.now(UTC),
                limit=len(identifiers),
            )
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
        finally:
            await engine.dispose()
            await http.close_async()  # type: ignore[no-untyped-call]
        if sent != len(identifiers):
            raise CheckFailedError(f"stream: sent {sent} of {len(identifiers)} rows")
        await check_sent(self.admin, identifiers, "stream")
        await check_accepted(self.standin, identifiers, "stream")
        return Run(sent, seconds, cpu_seconds)


async def one_round(bench: Bench, events: int, stream_events: int, tag: str) -> dict[str, Run]:
    runs: dict[str, Run] = {}
    await bench.redis.flushdb()
    runs["noop"] = await noop_baseline(bench.redis_url, events, bench.concurrency, bench.timeout)
    await bench.redis.flushdb()

    await bench.standin.reset()
    customers = [f"cus_bench_{index}" for index in range(events // 2)]
    http = create_http_client()
    try:
        client = create_stripe_client(bench.settings, http_client=http)
        runs["sdk"] = await sdk_baseline(client, customers, bench.concurrency, tag)
        await bench.standin.reset()
        runs["floor"] = await queue_and_sdk_baseline(
            bench.redis_url, client, customers, bench.concurrency, bench.timeout, tag
        )
        await bench.redis.flushdb()
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]

    identifiers = await bench.pending_rows(events)
    runs["worker"] = await bench.worker_run(identifiers)
    await bench.redis.flushdb()

    identifiers = await bench.pending_rows(stream_events)
    runs["stream"] = await bench.stream_run(identifiers)
    return runs


async def main(arguments: argparse.Namespace) -> int:
    started = time.perf_counter()
    events: int = arguments.events
    organizations = -(-events // 2)
    url = await create_database("sb_bench_reporting")
    redis: Redis = Redis.from_url(arguments.redis_url)
    await redis.flushdb()
    standin = Standin(in_process=not arguments.standin_process)
    admin: asyncpg.Connection | None = None
    fix_bullmq_block_timeouts()
    samples: list[dict[str, Run]] = []
    failure: str | None = None
    slow_stops = 0
    worker_peak_mb = 0.0
    try:
        await standin.ready()
        await asyncio.to_thread(migrate.upgrade, url)
        admin = await asyncpg.connect(dsn(url))
        await admin.execute(
            "INSERT INTO organizations (name, stripe_customer_id)"
            " SELECT 'org ' || n, 'cus_bench_' || n FROM generate_series(1, $1::int) AS n",
            organizations,
        )
        # Cursors in the far future: the worker's own closes (at start and on its schedule)
        # must add no rows, even when the clock passes a window's end during the run.
        await admin.execute(
            "INSERT INTO metering_cursors (organization_id, closed_through)"
            " SELECT id, 'infinity' FROM organizations"
        )
        settings = load_settings(
            database_url=url,
            redis_url=arguments.redis_url,
            stripe_api_key=DEFAULT_API_KEY,
            stripe_api_base=standin.url,
            stripe_meter_events_base=standin.url,
            meter_stream_threshold=10**9,
            log_level="WARNING",
        ).model_copy(update={"meter_rate_limit_per_second": BENCH_RATE_LIMIT})
        now = datetime.now(UTC)
        bench = Bench(
            url=url,
            redis_url=arguments.redis_url,
            admin=admin,
            redis=redis,
            standin=standin,
            settings=settings,
            concurrency=arguments.concurrency,
            timeout=arguments.timeout,
            organizations=organizations,
            # Windows from an hour before the last closable one backwards: a close at start
            # has nothing of its own to add, and every timestamp is well within 35 days.
            next_window=last_closable_end(now, WINDOW, timedelta(minutes=2)) - 2 * WINDOW,
        )
        print(
            f"\nwarm-up round ({min(events, 500)} events), then {arguments.rounds} rounds",
            flush=True,
        )
        await one_round(bench, min(events, 500), min(arguments.stream_events, 500), "w")
        for index in range(arguments.rounds):
            samples.append(await one_round(bench, events, arguments.stream_events, str(index)))
            print(
                f"  round {index + 1}: "
                + ", ".join(
                    f"{key} {run.per_second:.0f}/s ({run.cpu_ms_per_event:.2f} ms CPU)"
                    for key, run in samples[-1].items()
                ),
                flush=True,
            )
    except CheckFailedError as error:
        failure = str(error)
    else:
        slow_stops = bench.slow_stops
        worker_peak_mb = bench.worker_peak_mb
    finally:
        standin.stop()
        if admin is not None:
            await admin.close()
        await redis.flushdb()
        await redis.aclose()
        await drop_database(url)

    if failure is not None:
        print(f"\nCORRECTNESS CHECK FAILED: {failure}")
        return 1
    return report(arguments, samples, slow_stops, worker_peak_mb, time.perf_counter() - started)


def report(
    arguments: argparse.Namespace,
    runs: list[dict[str, Run]],
    slow_stops: int,
    worker_peak_mb: float,
    seconds: float,
) -> int:
    samples = [{key: run.per_second for key, run in sample.items()} for sample in runs]
    cpu = {
        key: statistics.median(sample[key].cpu_ms_per_event for sample in runs) for key in runs[0]
    }
    rate = {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}
    spread: dict[str, tuple[float, float]] = {
        key: (min(s[key] for s in samples), max(s[key] for s in samples)) for key in rate
    }
    concurrency = arguments.concurrency
    where = "a child process" if arguments.standin_process else "a thread of this process"
    print(
        f"\nmeter events/s, one process, concurrency {concurrency}; Stripe stand-in in {where};"
        f" median of"
        f" {arguments.rounds} interleaved rounds; {arguments.events} jobs/events per run,"
        f" {arguments.stream_events} for the stream\n"
    )
    print(
        f"  {'measurement':<58} {'median/s':>9} {'min':>7} {'max':>7} {'vs no-op':>9}"
        f" {'CPU ms/event':>13}"
    )
    labels: tuple[tuple[str, str], ...] = (
        ("noop", "baseline  bullmq Worker, no-op jobs"),
        ("sdk", "baseline  SDK v1 calls to the stand-in (no DB, no queue)"),
        ("floor", "baseline  bullmq jobs making one SDK call each (no DB)"),
        ("worker", "measured  MeteringWorker, one event per call"),
        ("stream", "measured  stream_backlog, v2 meter event stream"),
    )
    for key, label in labels:
        low, high = spread[key]
        versus = rate[key] / rate["noop"]
        print(
            f"  {label:<58} {rate[key]:>9.0f} {low:>7.0f} {high:>7.0f} {versus:>8.2f}x"
            f" {cpu[key]:>13.3f}"
        )
    worker_ratio = statistics.median(s["worker"] / s["noop"] for s in samples)
    sdk_ratio = statistics.median(s["worker"] / s["sdk"] for s in samples)
    floor_ratio = statistics.median(s["floor"] / s["noop"] for s in samples)
    worker_floor = statistics.median(s["worker"] / s["floor"] for s in samples)
    stream_rate = rate["stream"]
    print(
        f"\n  worker / bullmq no-op (per-round median)          {worker_ratio:.2f}x"
        f"\n  worker / bare SDK calls (per-round median)        {sdk_ratio:.2f}x"
        f"\n  bullmq + SDK call / bullmq no-op (per-round med.) {floor_ratio:.2f}x"
        "  <- the most a job that makes one SDK call can reach"
        f"\n  worker / bullmq + SDK call (per-round median)     {worker_floor:.2f}x"
        f"\n  no-op CPU / worker CPU per event (medians)        {cpu['noop'] / cpu['worker']:.2f}x"
        "  <- the rate ratio with a core to itself"
    )
    verdict = "meets" if worker_ratio >= WORKER_TARGET else "MISSES"
    print(
        f"\n  target: one-event-per-call path >= {WORKER_TARGET}x the no-op job rate:"
        f" {verdict} ({worker_ratio:.2f}x)"
    )
    verdict = "meets" if stream_rate >= STREAM_TARGET else "MISSES"
    print(f"  target: stream >= {STREAM_TARGET:,.0f} events/s: {verdict} ({stream_rate:,.0f}/s)")
    print("  checks: every run's rows all sent; the stand-in accepted each identifier once")
    if slow_stops:
        print(
            f"  NOTE: MeteringWorker.stop() was still waiting after 3 s in {slow_stops} of"
            f" {arguments.rounds + 1}"
            " runs (bullmq close blocked on its marker wait; woken by the benchmark)"
        )
    rss = PeakRss()  # the MeteringWorker ran in this process (so did an in-thread stand-in)
    rss.readings[f"worker runs (MeteringWorker in this process; stand-in in {where})"] = (
        worker_peak_mb
    )
    rss.print()
    print(
        f"    (this whole process, baselines, stream and generated rows too: {peak_rss_mb():.1f}"
        " MB; not a worker's, no target)"
    )
    print(f"\ntotal runtime {seconds:.0f} s")
    return 0


def positive(value: str) -> int:
    number = int(value)
    if number < 2:
        raise argparse.ArgumentTypeError("must be at least 2")
    return number


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events",
        type=positive,
        default=5000,
        help="no-op jobs and worker events per run (the worker's sweep enqueues at most 5,000)",
    )
    parser.add_argument("--stream-events", type=positive, default=20_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run at most")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument(
        "--standin-process",
        action="store_true",
        help="run the Stripe stand-in in a child process instead of a thread of this one",
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
