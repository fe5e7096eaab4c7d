"""Webhook endpoint throughput vs the bare idempotency insert, measured in the same run.

    .venv/bin/python -m benchmarks.webhook_throughput [--events 4000] [--clients 16]

Starts `sensor-billing serve` (one uvicorn process) on a throwaway database and drives
`POST /webhooks/stripe` with signed events from several concurrent keep-alive clients:
fresh events (each new), then the same events again (duplicates). Baseline: the bare
`INSERT INTO stripe_events ... ON CONFLICT (event_id) DO NOTHING RETURNING id` through asyncpg,
one transaction per insert, on the same database, measured twice: on one connection (one
stream of statements, as one API process is one Python thread) and on as many connections as
there are clients. Also measured: `GET /healthz` from the same process, the HTTP stack's
ceiling. Target (issue 3): the recording path (an event type with no handler, fresh and
duplicate) reaches at least 40% of the one-connection baseline; the many-connection ratios are
printed beside it. Exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from benchmarks._support import (
    LoadResult,
    create_database,
    drive,
    drop_database,
    dsn,
    free_port,
    http_post,
)
from sensor_billing.db import migrate
from sensor_billing.webhooks.signature import sign

SECRET = "whsec_benchmark_secret"
INSERT = (
    "INSERT INTO stripe_events (event_id, event_type) VALUES ($1, $2)"
    " ON CONFLICT (event_id) DO NOTHING RETURNING id"
)
TARGET_RATIO = 0.40


def event_body(event_type: str, index: int, run: str) -> bytes:
    invoice = {
        "id": f"in_{run}_{index}",
        "object": "invoice",
        "customer": f"cus_{run}_{index % 500}",
        "amount_due": 1200,
        "amount_paid": 1200,
        "currency": "eur",
        "parent": {"subscription_details": {"subscription": f"sub_{run}_{index % 500}"}},
    }
    event = {
        "id": f"evt_{run}_{event_type}_{index}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": int(time.time()),
        "type": event_type,
        "livemode": False,
        "data": {"object": invoice},
    }
    return json.dumps(event, indent=2).encode()


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


CASES = (
    ("recorded only (customer.updated, no handler)", "customer.updated"),
    ("with state handler (invoice.paid)", "invoice.paid"),
)


async def one_round(url: str, port: int, events: int, clients: int) -> dict[str, float]:
    """events/s of every measurement, interleaved so machine noise hits all of them alike."""
    run = secrets.token_hex(3)
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
    rates["ceiling: GET /healthz, same process"] = (await drive(port, healthz, clients)).per_second
    for label, event_type in CASES:
        bodies = [event_body(event_type, i, run) for i in range(events)]
        for kind in ("fresh", "duplicate"):
            result = await drive(port, signed_requests(bodies), clients)
            unexpected = {s: n for s, n in result.statuses.items() if s != 200}
            if unexpected:
                raise RuntimeError(f"{label} {kind}: unexpected statuses {unexpected}")
            rates[f"{label}: {kind}"] = result.per_second
    return rates


def ratio(samples: list[dict[str, float]], measured: str, baseline: str) -> float:
    """The median over rounds of each round's own ratio: both sides of a ratio were measured
    a few seconds apart, so noise that comes and goes between rounds cancels out."""
    return statistics.median(sample[measured] / sample[baseline] for sample in samples)


async def main(events: int, clients: int, rounds: int) -> int:
    url = await create_database("sb_bench_webhooks")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
    }
    server: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        command = Path(sys.executable).parent / "sensor-billing"
        server = subprocess.Popen(
            [str(command), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL
        )
        await wait_ready(port, server)
        warmup = [event_body("customer.updated", i, "warmup") for i in range(500)]
        await drive(port, signed_requests(warmup), clients)
        samples = [await one_round(url, port, events, clients) for _ in range(rounds)]
        rate = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        await drop_database(url)

    print(
        f"\nPOST /webhooks/stripe (one API process, {clients} concurrent keep-alive clients) vs the"
        f" bare INSERT ... ON CONFLICT through asyncpg; {events} events per measurement,"
        f" median of {rounds} interleaved rounds (ratios: median of each round's ratio)\n"
    )
    for key, value in rate.items():
        if key.startswith(("baseline", "ceiling")):
            print(f"  {key:<55} {value:>8.0f} events/s")
    print(f"\n  {'endpoint':<55} {'events/s':>8} {'vs 1 conn':>10} {f'vs {clients} conns':>12}")
    worst = 1.0
    for label, _ in CASES:
        for kind in ("fresh", "duplicate"):
            key = f"{label}: {kind}"
            value = rate[key]
            single = ratio(samples, key, f"baseline 1 connection: {kind}")
            many = ratio(samples, key, f"baseline {clients} connections: {kind}")
            if label.startswith("recorded only"):
                worst = min(worst, single)
            print(f"  {label + ': ' + kind:<55} {value:>8.0f} {single:>10.0%} {many:>12.0%}")
    ceiling = "ceiling: GET /healthz, same process"
    print(
        f"\n  ceiling (GET /healthz) vs 1-connection baseline: fresh"
        f" {ratio(samples, ceiling, 'baseline 1 connection: fresh'):.0%}, duplicate"
        f" {ratio(samples, ceiling, 'baseline 1 connection: duplicate'):.0%}"
    )
    verdict = "meets" if worst >= TARGET_RATIO else "MISSES"
    print(
        f"\n  target: >= {TARGET_RATIO:.0%} of the one-connection baseline on the recording path"
        f" (fresh and duplicate): {verdict} (worst {worst:.0%})"
    )
    return 0 if worst >= TARGET_RATIO else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.events, arguments.clients, arguments.rounds)))
