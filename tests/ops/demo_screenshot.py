"""The README's screenshot of the /ops overview, on demo data in a throwaway database.

    .venv/bin/python -m tests.ops.demo_screenshot [--out docs/ops-overview.png]
        [--redis-url redis://127.0.0.1:6379/9]

Needs PostgreSQL and Redis on 127.0.0.1 (like the tests) and Chromium (scripts/ensure-browser).
Flushes the Redis db it is given.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy import text

from sensor_billing.db import create_engine, create_session_factory, migrate, unit_of_work
from sensor_billing.settings import load_settings
from tests.conftest import ADMIN_DATABASE_URL
from tests.ops.browser import chromium, served, wait_for_heading
from tests.ops.conftest import OPS_TOKEN, fail_job
from tests.ops.seed import seed_billing
from tests.support.databases import create_database, drop_database

MORE_ORGANIZATIONS = ("Aurora Sensors", "Fjord Fisheries", "Glacier Pharma", "Nordic Dairy Co")

# Four more organizations with a month of hourly windows each (a few rows Stripe still has to
# take), and a day of webhook events.
MORE_USAGE = text("""
WITH orgs AS (
    INSERT INTO organizations (name, stripe_customer_id)
    SELECT n.name, 'cus_demo_' || n.number
      FROM unnest(CAST(:names AS text[])) WITH ORDINALITY AS n(name, number)
    RETURNING id, stripe_customer_id
)
INSERT INTO meter_reports (organization_id, event_name, window_start, window_end, value,
    stripe_customer_id, identifier, status, attempts, last_attempt_at, sent_at, created_at)
SELECT o.id, m.event_name, w.start, w.start + interval '1 hour',
       CASE m.event_name WHEN 'active_sensors' THEN 12 + (g % 3)
                         ELSE 700 + (g * 37) % 400 END,
       o.stripe_customer_id,
       'sb.' || o.id || '.' || m.event_name || '.' || extract(epoch FROM w.start)::bigint,
       CASE WHEN g < 1 THEN 'pending' ELSE 'sent' END,
       CASE WHEN g < 1 THEN 0 WHEN g % 97 = 0 THEN 2 ELSE 1 END,
       w.start + interval '1 hour 4 seconds',
       CASE WHEN g >= 1 THEN w.start + interval '1 hour 4 seconds' END,
       w.start + interval '1 hour 2 seconds'
  FROM orgs o
 CROSS JOIN (VALUES ('active_sensors'), ('temperature_readings')) AS m(event_name)
 CROSS JOIN generate_series(1, 720) AS g
 CROSS JOIN LATERAL (SELECT date_trunc('hour', now()) - g * interval '1 hour' AS start) w
""")

MORE_EVENTS = text("""
INSERT INTO stripe_events (event_id, event_type, processed_at)
SELECT 'evt_demo_' || g,
       (ARRAY['invoice.paid', 'customer.subscription.updated', 'charge.succeeded',
              'invoice.created', 'payment_intent.succeeded'])[1 + g % 5],
       now() - g * interval '23 minutes'
  FROM generate_series(1, 60) AS g
""")


async def main(out: Path, redis_url: str) -> None:
    url = await asyncio.to_thread(create_database, ADMIN_DATABASE_URL, "sb_ops_demo")
    engine = create_engine(url, pool_size=2)
    redis = Redis.from_url(redis_url)
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        sessions = create_session_factory(engine)
        await seed_billing(sessions)
        async with unit_of_work(sessions) as session:
            await session.execute(MORE_USAGE, {"names": list(MORE_ORGANIZATIONS)})
            await session.execute(MORE_EVENTS)
        await redis.flushdb()
        await fail_job(redis_url, "sb.demo-failed-report")
        settings = load_settings(
            database_url=url, redis_url=redis_url, ops_token=OPS_TOKEN, meter_window_seconds=3600
        )

        def shoot() -> None:
            with served(settings) as base, chromium() as driver:
                driver.set_window_size(1280, 760)
                driver.get(f"{base}/ops/login")
                driver.find_element("id", "token").send_keys(OPS_TOKEN)
                driver.find_element("id", "sign-in").click()
                wait_for_heading(driver, "Overview")
                out.parent.mkdir(parents=True, exist_ok=True)
                assert driver.save_screenshot(str(out))

        await asyncio.to_thread(shoot)
        print(f"wrote {out}")
    finally:
        await redis.flushdb()
        await redis.aclose()
        await engine.dispose()
        await asyncio.to_thread(drop_database, ADMIN_DATABASE_URL, url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/ops-overview.png"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.out, arguments.redis_url))
