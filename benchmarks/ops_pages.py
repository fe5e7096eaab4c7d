"""The /ops pages on a large ledger, vs a trivial request and a bare indexed query, same run.

    .venv/bin/python -m benchmarks.ops_pages [--ledger-rows 1000000] [--events 200000]
        [--rounds 5] [--redis-url redis://127.0.0.1:6379/14]

Builds a throwaway database (migrated with `sensor_billing.db.migrate.upgrade`) holding
`--ledger-rows` meter_reports rows (1,000 organizations, both meters, hourly windows going back
as far as the count needs; 97% sent, 1% each pending, failed and skipped, with attempts and
Stripe errors), a subscription per organization whose current period holds the last 30 days
(every tenth past due with a failed invoice; every fifth organization also has an older
canceled one),
`--events` stripe_events over 30 days and a state change for every tenth: all generated with
`INSERT ... SELECT generate_series`. Then starts `sensor-billing serve` (one uvicorn process)
with OPS_TOKEN set and fetches every page with the bearer token.

Measured, per page: the median and the slowest of `--rounds` requests after one warm-up,
each request a full HTTP round trip (query, template, response). Baselines of the same run:
`GET /healthz` (the HTTP round trip alone) and a bare indexed query through asyncpg (one
organization's newest 50 ledger rows). Target (issue 7): every page under 1 s, slowest request
included; and (issue 16) the API process's peak RSS under 200 MB. Uses the Redis db of
`--redis-url` (read only: queue depths and failed jobs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from benchmarks._support import (
    PeakRss,
    create_database,
    drop_database,
    dsn,
    free_port,
    timed_execute,
)
from sensor_billing.db import migrate

TARGET_SECONDS = 1.0
ORGANIZATIONS = 1000
TOKEN = "bench-ops-token-0123456789abcdef"
BARE_QUERY = """
SELECT * FROM meter_reports WHERE organization_id = $1
 ORDER BY window_start DESC, id DESC LIMIT 50
"""


async def generate(url: str, ledger_rows: int, events: int, now: datetime) -> None:
    connection = await asyncpg.connect(dsn(url))
    windows = -(-ledger_rows // (ORGANIZATIONS * 2))
    last_window = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    try:
        await connection.execute("SET synchronous_commit = off; SET maintenance_work_mem = '512MB'")
        await timed_execute(
            connection,
            f"{ORGANIZATIONS} organizations, subscriptions",
            """
            INSERT INTO organizations (name, stripe_customer_id)
            SELECT 'Organization ' || lpad(n::text, 4, '0'), 'cus_bench_' || n
              FROM generate_series(1, $1::int) AS n;
            """,
            ORGANIZATIONS,
        )
        # The organizations list decides each one's entitlement: every tenth subscription is
        # past due (its failed invoice starts the grace period), every fifth organization also
        # has an older canceled subscription that the live one must win over.
        await connection.execute(
            """
            WITH o AS (SELECT stripe_customer_id, row_number() OVER (ORDER BY id) AS n
                         FROM organizations)
            INSERT INTO stripe_subscriptions (id, stripe_customer_id, status,
                current_period_start, current_period_end, last_event_id, last_event_created)
            SELECT 'sub_' || stripe_customer_id, stripe_customer_id,
                   CASE WHEN n % 10 = 0 THEN 'past_due' ELSE 'active' END,
                   $1::timestamptz - interval '30 days', $1::timestamptz + interval '1 day',
                   'evt_bench_setup', $1::timestamptz - interval '30 days'
              FROM o
            UNION ALL
            SELECT 'sub_old_' || stripe_customer_id, stripe_customer_id, 'canceled',
                   $1::timestamptz - interval '60 days', $1::timestamptz - interval '30 days',
                   'evt_bench_setup', $1::timestamptz - interval '30 days'
              FROM o WHERE n % 5 = 0
            """,
            last_window,
        )
        await connection.execute(
            """
            INSERT INTO stripe_invoices (id, stripe_customer_id, stripe_subscription_id,
                payment_status, first_failed_at, last_event_id, last_event_created)
            SELECT 'in_' || stripe_customer_id, stripe_customer_id, id, 'payment_failed',
                   $1::timestamptz - interval '2 days', 'evt_bench_setup',
                   $1::timestamptz - interval '2 days'
              FROM stripe_subscriptions WHERE status = 'past_due'
            """,
            last_window,
        )
        await connection.execute(
            "INSERT INTO metering_cursors (organization_id, closed_through)"
            " SELECT id, $1 FROM organizations",
            last_window + timedelta(hours=1),
        )
        await timed_execute(
            connection,
            f"{ledger_rows} ledger rows ({windows} hourly windows each)",
            """
            INSERT INTO meter_reports (organization_id, event_name, window_start, window_end,
                value, stripe_customer_id, identifier, status, skip_reason, attempts,
                last_error, last_attempt_at, sent_at, created_at)
            SELECT o.id, m.event_name, w.start, w.start + interval '1 hour',
                   (random() * 1000)::int, o.stripe_customer_id,
                   'sb.' || o.id || '.' || m.event_name || '.'
                       || extract(epoch FROM w.start)::bigint,
                   s.status,
                   CASE s.status WHEN 'skipped' THEN 'no readings in the window' END,
                   CASE s.status WHEN 'pending' THEN 0 WHEN 'skipped' THEN 0
                                 WHEN 'failed' THEN 1 ELSE 1 + (random() < 0.02)::int END,
                   CASE s.status WHEN 'failed'
                        THEN 'Stripe refused the meter event (400): No such customer' END,
                   w.start + interval '1 hour 5 seconds',
                   CASE s.status WHEN 'sent' THEN w.start + interval '1 hour 5 seconds' END,
                   w.start + interval '1 hour 2 seconds'
              FROM (SELECT id, stripe_customer_id, row_number() OVER (ORDER BY id) AS n
                      FROM organizations) o
             CROSS JOIN (VALUES ('active_sensors'), ('temperature_readings')) AS m(event_name)
             CROSS JOIN LATERAL (
                   SELECT $1::timestamptz - g * interval '1 hour' AS start, g
                     FROM generate_series(0, $2::int - 1) AS g) w
             CROSS JOIN LATERAL (
                   SELECT CASE WHEN (o.n * 7 + w.g * 13 + length(m.event_name)) % 100 = 0
                                    THEN 'failed'
                               WHEN (o.n * 7 + w.g * 13 + length(m.event_name)) % 100 = 1
                                    THEN 'skipped'
                               WHEN w.g = 0 AND o.n % 10 = 0 THEN 'pending'
                               ELSE 'sent' END AS status) s
             LIMIT $3
            """,
            last_window,
            windows,
            ledger_rows,
        )
        await timed_execute(
            connection,
            f"{events} webhook events over 30 days, every tenth with a state change",
            """
            WITH e AS (
                INSERT INTO stripe_events (event_id, event_type, processed_at)
                SELECT 'evt_bench_' || g,
                       (ARRAY['invoice.paid', 'customer.subscription.updated',
                              'charge.succeeded', 'invoice.payment_failed'])[1 + g % 4],
                       $1::timestamptz - (g * interval '30 days' / $2::int)
                  FROM generate_series(1, $2::int) AS g
                RETURNING event_id, event_type, processed_at
            )
            , o AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM organizations)
            INSERT INTO billing_state_changes (organization_id, stripe_object_id, event_id,
                event_type, change, summary, created_at)
            SELECT o.id, 'sub_bench', e.event_id, e.event_type, '{}'::jsonb,
                   'subscription status past_due -> active', e.processed_at
              FROM e JOIN o ON o.n = substr(e.event_id, 11)::int % $3::int
             WHERE substr(e.event_id, 11)::int % 10 = 0
            """,
            now,
            events,
            ORGANIZATIONS,
        )
        await timed_execute(connection, "VACUUM ANALYZE", "VACUUM ANALYZE")
    finally:
        await connection.close()


async def wait_ready(client: httpx.AsyncClient, server: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if server.poll() is not None:
            raise RuntimeError("the API process exited during start-up")
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the API did not become ready")


async def timed_get(client: httpx.AsyncClient, path: str, rounds: int) -> list[float]:
    answer = await client.get(path)  # warm-up
    if answer.status_code != 200:
        raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:200]}")
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = await client.get(path)
        samples.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code}")
    return samples


async def main(arguments: argparse.Namespace) -> int:
    started = time.perf_counter()
    now = datetime.now(UTC)
    url = await create_database("sb_bench_ops")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": arguments.redis_url,
        "OPS_TOKEN": TOKEN,
        "LOG_LEVEL": "WARNING",
        "METER_WINDOW_SECONDS": "3600",
    }
    server: subprocess.Popen[bytes] | None = None
    results: dict[str, list[float]] = {}
    rss = PeakRss()
    try:
        print(f"\ngenerating data in {url.rsplit('/', 1)[-1]}:", flush=True)
        await asyncio.to_thread(migrate.upgrade, url)
        await generate(url, arguments.ledger_rows, arguments.events, now)
        print(f"  {'total (migration included)':<52} {time.perf_counter() - started:>7.1f} s")
        admin = await asyncpg.connect(dsn(url))
        try:
            total = int(await admin.fetchval("SELECT count(*) FROM meter_reports"))
            organization = await admin.fetchval(
                "SELECT id FROM organizations ORDER BY id OFFSET 500 LIMIT 1"
            )
            # Cursors in the middle of the organization's ledger and of the webhook log, as
            # the "older" links of the pages before them would carry.
            organization_rows = int(
                await admin.fetchval(
                    "SELECT count(*) FROM meter_reports WHERE organization_id = $1", organization
                )
            )
            deep_ledger = await admin.fetchrow(
                "SELECT window_start, id FROM meter_reports WHERE organization_id = $1"
                " ORDER BY window_start DESC, id DESC OFFSET $2 LIMIT 1",
                organization,
                organization_rows // 2,
            )
            middle_organization = await admin.fetchrow(
                "SELECT name, id FROM organizations ORDER BY name, id OFFSET $1 LIMIT 1",
                ORGANIZATIONS // 2,
            )
            deep_event = await admin.fetchrow(
                "SELECT processed_at, id FROM stripe_events"
                " ORDER BY processed_at DESC, id DESC OFFSET $1 LIMIT 1",
                arguments.events // 2,
            )
            bare: list[float] = []
            for _ in range(arguments.rounds + 1):
                begun = time.perf_counter()
                await admin.fetch(BARE_QUERY, organization)
                bare.append(time.perf_counter() - begun)
            results["baseline  bare indexed query (asyncpg)"] = bare[1:]
        finally:
            await admin.close()

        command = Path(sys.executable).parent / "sensor-billing"
        server = subprocess.Popen(
            [str(command), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL
        )
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        ) as client:
            await wait_ready(client, server)
            pages = {
                "baseline  GET /healthz": "/healthz",
                "overview": "/ops",
                "organizations list (status, entitlement)": "/ops/organizations",
                "organizations list, middle page": (
                    f"/ops/organizations?after={middle_organization['name']}"
                    f"|{middle_organization['id']}"
                ),
                "organization (chart, ledger, changes)": f"/ops/organizations/{organization}",
                "organization, failed rows only": (
                    f"/ops/organizations/{organization}?status=failed"
                ),
                "organization, ledger middle page": (
                    f"/ops/organizations/{organization}"
                    f"?before={deep_ledger['window_start'].isoformat()}|{deep_ledger['id']}"
                ),
                "failures": "/ops/failures",
                "webhook log": "/ops/webhooks",
                "webhook log, type invoice.paid": "/ops/webhooks?type=invoice.paid",
                "webhook log, middle page": (
                    f"/ops/webhooks?before={deep_event['processed_at'].isoformat()}"
                    f"|{deep_event['id']}"
                ),
            }
            for label, path in pages.items():
                results[label] = await timed_get(client, path, arguments.rounds)
            rss.read("API (serve)", server.pid)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        await drop_database(url)

    healthz = statistics.median(results["baseline  GET /healthz"])
    print(
        f"\n/ops pages on {total} ledger rows and {arguments.events} webhook events; one API"
        f" process; {arguments.rounds} requests per page after a warm-up; ms\n"
    )
    print(f"  {'page':<44} {'median':>8} {'slowest':>8} {'vs /healthz':>12}")
    worst = 0.0
    for label, samples in results.items():
        median = statistics.median(samples)
        slowest = max(samples)
        if not label.startswith("baseline"):
            worst = max(worst, slowest)
        print(
            f"  {label:<44} {median * 1000:>8.1f} {slowest * 1000:>8.1f} {median / healthz:>11.1f}x"
        )
    rss.print()
    verdict = "meets" if worst < TARGET_SECONDS else "MISSES"
    print(
        f"\n  target: every page under {TARGET_SECONDS:.0f} s (slowest request):"
        f" {verdict} (slowest {worst * 1000:.0f} ms)"
    )
    return 0 if worst < TARGET_SECONDS and rss.within_target() else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ledger-rows", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    sys.exit(asyncio.run(main(parser.parse_args())))
