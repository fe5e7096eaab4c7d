"""`GET /v1/organizations/{id}/billing` vs a bare FastAPI endpoint doing its one-row select.

    .venv/bin/python -m benchmarks.billing_read [--organizations 2000] [--requests 4000]
        [--connections 16] [--rounds 12] [--redis-url redis://127.0.0.1:6379/13]

Builds a throwaway database (migrated) with `--organizations` organizations, each with a
Stripe customer, an active subscription and its two metered prices (every tenth past due with
a failed invoice, every fifth with an older canceled subscription too), and a service key.
Starts `sensor-billing serve` (one uvicorn process) and, as the baseline, a bare FastAPI app in
its own uvicorn process (`benchmarks/bare_billing_app.py`: the same select straight on an
asyncpg pool, the row returned as JSON). One client process (this one) sends `--requests`
GETs for random organizations over `--connections` keep-alive connections to each, the two
interleaved round by round (which goes first alternates), in short rounds so that the noise of
a shared machine hits both sides of each round's ratio alike.

Printed: requests/s, p50 and p99 latency of both, the ratio (median of each round's own
ratio), and the API process's peak RSS. Target (issue 14): the endpoint reaches at least 50%
of the bare endpoint's rate. Exits 1 when it misses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

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
    peak_rss_mb,
    process_cpu_seconds,
)
from sensor_billing.db import migrate

TARGET_RATIO = 0.50
LOOKUP_KEYS = {
    "active_sensors": "sensor_billing_active_sensors_monthly_eur",
    "temperature_readings": "sensor_billing_temperature_readings_monthly_eur",
}


async def generate(url: str, organizations: int) -> list[str]:
    connection = await asyncpg.connect(dsn(url))
    try:
        await connection.execute(
            """
            INSERT INTO stripe_prices (id, currency, unit_amount_decimal, meter_id, lookup_key)
            VALUES ('price_bench_sensors', 'eur', 500, 'mtr_bench_sensors', $1),
                   ('price_bench_readings', 'eur', 0.01, 'mtr_bench_readings', $2)
            """,
            LOOKUP_KEYS["active_sensors"],
            LOOKUP_KEYS["temperature_readings"],
        )
        await connection.execute(
            """
            INSERT INTO organizations (name, stripe_customer_id)
            SELECT 'Organization ' || n, 'cus_bench_' || n FROM generate_series(1, $1::int) n
            """,
            organizations,
        )
        await connection.execute(
            """
            WITH o AS (SELECT stripe_customer_id, row_number() OVER (ORDER BY id) AS n
                         FROM organizations)
            INSERT INTO stripe_subscriptions (id, stripe_customer_id, status,
                current_period_start, current_period_end, metered_price_ids, last_event_id,
                last_event_created)
            SELECT 'sub_' || stripe_customer_id, stripe_customer_id,
                   CASE WHEN n % 10 = 0 THEN 'past_due' ELSE 'active' END,
                   now() - interval '10 days', now() + interval '20 days',
                   ARRAY['price_bench_readings', 'price_bench_sensors'], 'evt_bench',
                   now() - interval '10 days'
              FROM o
            UNION ALL
            SELECT 'sub_old_' || stripe_customer_id, stripe_customer_id, 'canceled',
                   now() - interval '40 days', now() - interval '10 days',
                   ARRAY['price_bench_readings', 'price_bench_sensors'], 'evt_bench',
                   now() - interval '40 days'
              FROM o WHERE n % 5 = 0
            """
        )
        await connection.execute(
            """
            INSERT INTO stripe_invoices (id, stripe_customer_id, stripe_subscription_id,
                payment_status, first_failed_at, last_event_id, last_event_created)
            SELECT 'in_' || id, stripe_customer_id, id, 'payment_failed',
                   now() - interval '2 days', 'evt_bench', now() - interval '2 days'
              FROM stripe_subscriptions WHERE status = 'past_due'
            """
        )
        await connection.execute("VACUUM ANALYZE")
        return [str(row["id"]) for row in await connection.fetch("SELECT id FROM organizations")]
    finally:
        await connection.close()


def service_key(env: dict[str, str]) -> str | None:
    """A service key made with the CLI, when this build has `keys create` (the /v1 platform)."""
    command = Path(sys.executable).parent / "sensor-billing"
    made = subprocess.run(
        [str(command), "keys", "create", "--name", "benchmark"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        return None
    return next(word for word in made.stdout.split() if word.startswith("sbk_"))


async def wait_ready(port: int, path: str, server: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if server.poll() is not None:
                raise RuntimeError(f"the process behind port {port} exited during start-up")
            try:
                await client.get(f"http://127.0.0.1:{port}{path}")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


def get_requests(path: str, ids: list[str], count: int, headers: dict[str, str]) -> list[bytes]:
    rng = random.Random(count)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return [
        f"GET {path.format(id=rng.choice(ids))} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode()
        for _ in range(count)
    ]


def checked(result: LoadResult, label: str) -> LoadResult:
    unexpected = {status: n for status, n in result.statuses.items() if status != 200}
    if unexpected:
        raise RuntimeError(f"{label}: unexpected statuses {unexpected}")
    return result


API_PATH = "/v1/organizations/{id}/billing"
BARE_PATH = "/bare/organizations/{id}/billing"


async def main(arguments: argparse.Namespace) -> int:
    url = await create_database("sb_bench_billing")
    api_port, bare_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": arguments.redis_url,
        "LOG_LEVEL": "WARNING",
    }
    processes: list[subprocess.Popen[bytes]] = []
    results: dict[str, list[LoadResult]] = {"api": [], "bare": []}
    # CPU milliseconds each server process spent per request, round by round: unlike the rate,
    # it hardly moves when other work shares the machine.
    cpu_ms: dict[str, list[float]] = {"api": [], "bare": []}
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        ids = await generate(url, arguments.organizations)
        key = service_key(env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        command = Path(sys.executable).parent / "sensor-billing"
        api = subprocess.Popen(
            [str(command), "serve", "--port", str(api_port)], env=env, stdout=subprocess.DEVNULL
        )
        processes.append(api)
        bare = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "benchmarks.bare_billing_app:app",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        processes.append(bare)
        await wait_ready(api_port, "/healthz", api)
        await wait_ready(bare_port, "/docs", bare)
        targets = {
            "api": (api_port, API_PATH, headers),
            "bare": (bare_port, BARE_PATH, {}),
        }
        pids = {"api": api.pid, "bare": bare.pid}
        for name, (port, path, extra) in targets.items():  # warm-up: pools, caches, plans
            checked(
                await drive(port, get_requests(path, ids, 1000, extra), arguments.connections), name
            )
        for round_number in range(arguments.rounds):
            order = ["api", "bare"] if round_number % 2 == 0 else ["bare", "api"]
            for name in order:
                port, path, extra = targets[name]
                load = get_requests(path, ids, arguments.requests, extra)
                used = process_cpu_seconds(pids[name])
                results[name].append(checked(await drive(port, load, arguments.connections), name))
                used = process_cpu_seconds(pids[name]) - used
                cpu_ms[name].append(used * 1000 / arguments.requests)
        rss = PeakRss()
        rss.read("API (serve)", api.pid)
        bare_rss = peak_rss_mb(bare.pid)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        await drop_database(url)

    auth = "service key" if key else "no service key: this build has no /v1 auth"
    print(
        f"\n{API_PATH} (one `sensor-billing serve` process, {auth}) vs"
        f" a bare FastAPI endpoint running its statement on asyncpg (own uvicorn process);"
        f" {arguments.organizations} organizations, {arguments.requests} requests per round over"
        f" {arguments.connections} keep-alive connections from one client process,"
        f" {arguments.rounds} interleaved rounds\n"
    )
    print(
        f"  {'':<28} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11}"
        "   per round (req/s)"
    )
    for name, label in (("api", "GET /billing (the API)"), ("bare", "bare FastAPI + asyncpg")):
        rounds = results[name]
        rate = statistics.median(r.per_second for r in rounds)
        latencies = [ms for r in rounds for ms in r.latencies_ms]
        p50 = statistics.median(latencies)
        p99 = statistics.quantiles(latencies, n=100)[98]
        each = ", ".join(f"{r.per_second:.0f}" for r in rounds)
        cpu = statistics.median(cpu_ms[name])
        print(f"  {label:<28} {rate:>8.0f} {p50:>8.1f} {p99:>8.1f} {cpu:>11.2f}   {each}")
    ratios = [
        a.per_second / b.per_second for a, b in zip(results["api"], results["bare"], strict=True)
    ]
    ratio = statistics.median(ratios)
    print(f"\n  ratio per round: {', '.join(f'{r:.0%}' for r in ratios)}")
    cpu_ratio = statistics.median(
        bare / api for api, bare in zip(cpu_ms["api"], cpu_ms["bare"], strict=True)
    )
    print(
        f"  CPU per request, the bare endpoint's over the API's (the rate ratio a quiet machine"
        f" would show, the server being the bottleneck): {cpu_ratio:.0%}"
    )
    rss.print()
    print(f"    (the bare app, a baseline: {bare_rss:.0f} MB)")
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"\n  target: >= {TARGET_RATIO:.0%} of the bare endpoint's rate: {verdict} ({ratio:.0%})")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--organizations", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    sys.exit(asyncio.run(main(parser.parse_args())))
