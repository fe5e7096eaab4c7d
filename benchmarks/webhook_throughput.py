"""Webhook endpoint throughput per event type vs the bare idempotency insert and vs the recording
path, measured in the same run.

    .venv/bin/python -m benchmarks.webhook_throughput [--events 3000] [--clients 16]
        [--rounds 3] [--redis-url redis://127.0.0.1:6379/13]

Starts two `sensor-billing serve` processes (one uvicorn process each, as two API replicas) on
a throwaway database and drives `POST /webhooks/stripe` with signed events from several
concurrent keep-alive clients. Every event is built from the recorded Stripe event of its type
(tests/fixtures/stripe, stripe-ruby-mock's 2020-08-27 payloads, 1 to 5 KB) under fresh ids. A
round sends, for each type:
  - fresh: new events to the first process; the handled types in the order of an object's
    life (checkout linking a new organization, subscription created, updated, canceled, an
    invoice failing then paid, the customer deleted), so every event changes state;
  - duplicate: the same events again to the same process (answered from its memory);
  - duplicate, other process: the same events to the second process, which never saw them
    (answered by PostgreSQL, as a replica behind a load balancer answers most redeliveries).
The recording path is an event type without a handler: `customer.updated` (1 KB) for issue
3's target, as before, and `invoice.finalized` (a 5 KB invoice, as large as the handled events)
as the rate the handled types are compared with. Baselines: the bare
`INSERT INTO stripe_events ... ON CONFLICT (event_id) DO NOTHING RETURNING id` through
asyncpg, one transaction per insert, on one connection and on as many as there are clients;
and `GET /healthz` from the same process, the HTTP stack's ceiling.

Beside each rate: the CPU time the API process spent per event (/proc/<pid>/stat), which the
machine's other work disturbs less than the rate.

Targets, each the median over rounds of that round's own ratio:
  - issue 3: the recording path (`customer.updated`, fresh and duplicate) reaches at least
    40% of the one-connection baseline;
  - issue 16: each handled type, fresh, reaches at least 50% of the recording path, fresh;
    its duplicates at least 90% of the recording path's duplicates ("as fast as", with room
    for this machine's noise), in the same process and in the other one.
Peak RSS of both API processes is printed beside the results (target: under 200 MB each), and
the mean number of handled events the first process applied per transaction (its
`sensor_billing_webhook_group_events`). The handled events' `billing:entitlement-changed` jobs
go to `--redis-url`'s `billing-events` queue, which is removed at the end.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from benchmarks._support import (
    LoadResult,
    PeakRss,
    create_database,
    drive,
    drop_database,
    dsn,
    free_port,
    http_post,
    process_cpu_seconds,
)
from sensor_billing.db import migrate
from sensor_billing.jobs import QueueNames
from sensor_billing.jobs.connection import open_queue
from sensor_billing.webhooks.signature import sign

SECRET = "whsec_benchmark_secret"
INSERT = (
    "INSERT INTO stripe_events (event_id, event_type) VALUES ($1, $2)"
    " ON CONFLICT (event_id) DO NOTHING RETURNING id"
)
RECORDING_TARGET = 0.40  # of the one-connection baseline (issue 3)
HANDLED_FRESH_TARGET = 0.50  # of the recording path, fresh (issue 16)
HANDLED_DUPLICATE_TARGET = 0.90  # of the recording path's duplicates (issue 16)
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "stripe" / "events"
KINDS = ("fresh", "duplicate", "duplicate, other process")

# (event object from the fixture, event number, round tag, the round's organizations) -> the
# object to send: every id made unique to this round and event.
ObjectBuilder = Callable[[dict[str, Any], int, str, list[str]], dict[str, Any]]


def _customer(index: int, run: str) -> str:
    return f"cus_{run}_{index}"


def _checkout(obj: dict[str, Any], i: int, run: str, orgs: list[str]) -> dict[str, Any]:
    return {**obj, "id": f"cs_{run}_{i}", "customer": _customer(i, run),
            "metadata": {"organization_id": orgs[i]}}  # fmt: skip


def _subscription(status: str) -> ObjectBuilder:
    def build(obj: dict[str, Any], i: int, run: str, orgs: list[str]) -> dict[str, Any]:
        return {**obj, "id": f"sub_{run}_{i}", "customer": _customer(i, run), "status": status}

    return build


def _invoice(obj: dict[str, Any], i: int, run: str, orgs: list[str]) -> dict[str, Any]:
    return {**obj, "id": f"in_{run}_{i}", "customer": _customer(i, run),
            "subscription": f"sub_{run}_{i}"}  # fmt: skip


def _customer_object(obj: dict[str, Any], i: int, run: str, orgs: list[str]) -> dict[str, Any]:
    return {**obj, "id": _customer(i, run)}


@dataclass(frozen=True)
class Case:
    event_type: str
    build: ObjectBuilder
    handled: bool = True

    @property
    def label(self) -> str:
        return self.event_type if self.handled else f"{self.event_type} (recorded only)"


# The recording path as issue 3 measured it: a small event (1 KB) without a handler.
RECORDING_SMALL = Case("customer.updated", _customer_object, handled=False)
# The recording path the handled types are compared with: an event as large as theirs (5 KB).
RECORDING = Case("invoice.finalized", _invoice, handled=False)
# In the order of an object's life, so that each event changes what the one before set.
CASES = (
    RECORDING_SMALL,
    RECORDING,
    Case("checkout.session.completed", _checkout),
    Case("customer.subscription.created", _subscription("active")),
    Case("customer.subscription.updated", _subscription("past_due")),
    Case("customer.subscription.deleted", _subscription("canceled")),
    Case("invoice.payment_failed", _invoice),
    Case("invoice.paid", _invoice),
    Case("customer.deleted", _customer_object),
)


def fixture_event(event_type: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(
        (FIXTURES / f"stripe-ruby-mock__{event_type}__n1.json").read_text()
    )
    return event


def event_bodies(case: Case, events: int, run: str, created: int, orgs: list[str]) -> list[bytes]:
    template = fixture_event(case.event_type)
    bodies = []
    for index in range(events):
        event = copy.deepcopy(template)
        event["id"] = f"evt_{run}_{case.event_type}_{index}"
        event["created"] = created
        event["data"]["object"] = case.build(event["data"]["object"], index, run, orgs)
        bodies.append(json.dumps(event, indent=2).encode())  # Stripe sends it pretty-printed
    return bodies


def signed_requests(bodies: list[bytes]) -> list[bytes]:
    now = int(time.time())
    return [
        http_post(
            "/webhooks/stripe",
            body,
            {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign(SECRET, now, body),
            },
        )
        for body in bodies
    ]


async def baseline(url: str, ids: list[str], clients: int) -> LoadResult:
    """The bare idempotency insert, autocommit, `clients` connections working through `ids`."""
    pool = await asyncpg.create_pool(dsn(url), min_size=clients, max_size=clients)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for event_id in ids:
        queue.put_nowait(event_id)

    async def worker() -> None:
        async with pool.acquire() as connection:
            while not queue.empty():
                await connection.fetchval(INSERT, queue.get_nowait(), "customer.updated")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    seconds = time.perf_counter() - started
    await pool.close()
    return LoadResult(len(ids), seconds, {}, [])


async def wait_ready(port: int, server: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            if server.poll() is not None:
                raise RuntimeError("the API process exited during start-up")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the API did not become ready")


async def new_organizations(url: str, count: int) -> list[str]:
    connection = await asyncpg.connect(dsn(url))
    try:
        rows = await connection.fetch(
            "INSERT INTO organizations (name) SELECT 'Bench ' || n FROM generate_series(1, $1) n"
            " RETURNING id",
            count,
        )
    finally:
        await connection.close()
    return [str(row["id"]) for row in rows]


@dataclass(frozen=True)
class Api:
    """One `sensor-billing serve` process."""

    port: int
    pid: int


CPU = " | API CPU ms/event"  # suffix of the keys that hold the API process's CPU per event


async def one_round(url: str, apis: tuple[Api, Api], events: int, clients: int) -> dict[str, float]:
    """events/s of every measurement, interleaved so machine noise hits all of them alike;
    beside each endpoint's rate, the CPU time its API process spent per event."""
    run = secrets.token_hex(3)
    first, other = apis
    rates: dict[str, float] = {}
    ids = [f"base_{run}_{i}" for i in range(events)]
    rates["baseline 1 connection: fresh"] = (await baseline(url, ids, 1)).per_second
    rates["baseline 1 connection: duplicate"] = (await baseline(url, ids, 1)).per_second
    ids = [f"basec_{run}_{i}" for i in range(events)]
    rates[f"baseline {clients} connections: fresh"] = (await baseline(url, ids, clients)).per_second
    rates[f"baseline {clients} connections: duplicate"] = (
        await baseline(url, ids, clients)
    ).per_second
    # The ceiling of this HTTP stack on this machine: the same process answering GET /healthz
    # (no database, no body), driven the same way. No endpoint can go faster than this.
    healthz = [b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"] * events
    rates["ceiling: GET /healthz, same process"] = (
        await drive(first.port, healthz, clients)
    ).per_second
    orgs = await new_organizations(url, events)
    created = int(time.time()) - 3600
    for step, case in enumerate(CASES):
        bodies = event_bodies(case, events, run, created + step, orgs)
        for kind, api in zip(KINDS, (first, first, other), strict=True):
            requests = signed_requests(bodies)
            cpu_before = process_cpu_seconds(api.pid)
            result = await drive(api.port, requests, clients)
            cpu_seconds = process_cpu_seconds(api.pid) - cpu_before
            unexpected = {s: n for s, n in result.statuses.items() if s != 200}
            if unexpected:
                raise RuntimeError(f"{case.label} {kind}: unexpected statuses {unexpected}")
            rates[f"{case.label}: {kind}"] = result.per_second
            rates[f"{case.label}: {kind}{CPU}"] = cpu_seconds * 1000 / events
    return rates


def ratio(samples: list[dict[str, float]], measured: str, baseline: str) -> float:
    """The median over rounds of each round's own ratio: both sides of a ratio were measured
    a few seconds apart, so noise that comes and goes between rounds cancels out."""
    return statistics.median(sample[measured] / sample[baseline] for sample in samples)


def spread(samples: list[dict[str, float]], key: str) -> str:
    values = [sample[key] for sample in samples]
    return f"{min(values):.0f}-{max(values):.0f}"


def report(samples: list[dict[str, float]], clients: int, rss: PeakRss) -> bool:
    """Print the results; True when every target holds."""
    rate = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    for key, value in rate.items():
        if key.startswith(("baseline", "ceiling")) and not key.endswith(CPU):
            print(f"  {key:<55} {value:>8.0f} events/s  (rounds: {spread(samples, key)})")
    print(
        f"\n  {'endpoint':<57} {'events/s':>8} {'rounds':>11} {'vs 1 conn':>10}"
        f" {'vs recording':>13} {'API CPU ms/event':>17}"
    )
    verdicts: list[tuple[str, float, float]] = []
    for case in CASES:
        for kind in KINDS:
            key = f"{case.label}: {kind}"
            base_kind = "duplicate" if kind.startswith("duplicate") else "fresh"
            single = ratio(samples, key, f"baseline 1 connection: {base_kind}")
            recording = ratio(samples, key, f"{RECORDING.label}: {kind}")
            print(
                f"  {key:<57} {rate[key]:>8.0f} {spread(samples, key):>11} {single:>10.0%}"
                f" {recording:>13.0%} {rate[key + CPU]:>17.2f}"
            )
            if case is RECORDING_SMALL and kind != KINDS[2]:
                verdicts.append(
                    (f"recording path, {kind}, vs 1 connection", single, RECORDING_TARGET)
                )
            elif case.handled:
                target = HANDLED_FRESH_TARGET if kind == "fresh" else HANDLED_DUPLICATE_TARGET
                verdicts.append((f"{case.event_type}, {kind}, vs recording", recording, target))
    ceiling = "ceiling: GET /healthz, same process"
    print(
        f"\n  ceiling (GET /healthz) vs 1-connection baseline: fresh"
        f" {ratio(samples, ceiling, 'baseline 1 connection: fresh'):.0%}, duplicate"
        f" {ratio(samples, ceiling, 'baseline 1 connection: duplicate'):.0%}"
    )
    rss.print()
    missed = [(name, value, target) for name, value, target in verdicts if value < target]
    print(
        f"\n  targets: recording path >= {RECORDING_TARGET:.0%} of the one-connection baseline;"
        f" each handled type fresh >= {HANDLED_FRESH_TARGET:.0%} of the recording path,"
        f" duplicates >= {HANDLED_DUPLICATE_TARGET:.0%} of its duplicates:"
        f" {'meets' if not missed else 'MISSES'}"
    )
    for name, value, target in missed:
        print(f"    missed: {name} {value:.0%} < {target:.0%}")
    return not missed and rss.within_target()


async def main(events: int, clients: int, rounds: int, redis_url: str) -> int:
    url = await create_database("sb_bench_webhooks")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
    }
    servers: list[subprocess.Popen[bytes]] = []
    rss = PeakRss()
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        command = Path(sys.executable).parent / "sensor-billing"
        ports = (free_port(), free_port())
        for port in ports:
            servers.append(
                subprocess.Popen(
                    [str(command), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL
                )
            )
        for port, server in zip(ports, servers, strict=True):
            await wait_ready(port, server)
        apis = (Api(ports[0], servers[0].pid), Api(ports[1], servers[1].pid))
        warmup = event_bodies(RECORDING, 500, "warmup", int(time.time()), [])
        for api in apis:
            await drive(api.port, signed_requests(warmup), clients)
        samples = [await one_round(url, apis, events, clients) for _ in range(rounds)]
        for name, api in zip(("API (serve), first", "API (serve), other"), apis, strict=True):
            rss.read(name, api.pid)
        groups = await group_sizes(apis[0].port)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        await drop_database(url)
        await forget_entitlement_jobs(redis_url)

    print(
        f"\nPOST /webhooks/stripe (one API process, {clients} concurrent keep-alive clients) vs the"
        f" bare INSERT ... ON CONFLICT through asyncpg and vs the recording path; {events} events"
        f" per measurement, median of {rounds} interleaved rounds (ratios: median of each"
        f" round's ratio; rounds: slowest-fastest)\n"
    )
    met = report(samples, clients, rss)
    print(f"\n  handled events per transaction, first API process (webhooks/groups.py): {groups}")
    return 0 if met else 1


async def group_sizes(port: int) -> str:
    """The mean of `sensor_billing_webhook_group_events` the API counted, and how many groups."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    values = {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines())
        if name.startswith("sensor_billing_webhook_group_events_")
    }
    count = values.get("sensor_billing_webhook_group_events_count", 0.0)
    total = values.get("sensor_billing_webhook_group_events_sum", 0.0)
    return f"mean {total / count:.1f} over {count:.0f} groups" if count else "none counted"


async def forget_entitlement_jobs(redis_url: str) -> None:
    """The `billing:entitlement-changed` jobs the handled events added (nothing consumes them
    here), removed so that runs do not pile them up in Redis."""
    queue = open_queue(redis_url, QueueNames.BILLING_EVENTS)
    try:
        await queue.obliterate(force=True)
    finally:
        await queue.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    # /readyz checks it; the handled events add their entitlement jobs there (removed at the end).
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    arguments = parser.parse_args()
    sys.exit(
        asyncio.run(
            main(arguments.events, arguments.clients, arguments.rounds, arguments.redis_url)
        )
    )
