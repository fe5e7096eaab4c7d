"""The worker's daily checks: the previous UTC day reconciled against Stripe's summaries and
old webhook events and entitlement notices pruned, on the worker's own schedule, one run per
day whatever the number of replicas, each run recorded with its drift."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.devtools.stripe_standin.metering import cancel
from sensor_billing.jobs.worker import MeteringWorker
from sensor_billing.metering.daily_checks import (
    DAILY_CHECKS_JOB,
    DAILY_CHECKS_SCHEDULE,
    DAILY_CHECKS_SCHEDULER,
)
from tests.metering.conftest import DAY, drain, make_client
from tests.support.billing_state import add_notices, new_organization
from tests.support.usage_data import generate_usage

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def runs(sessions: SessionFactory) -> list[dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(text("SELECT * FROM reconciliation_runs ORDER BY id"))
        return [dict(row._mapping) for row in result]


async def until_runs(sessions: SessionFactory, count: int, within: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while len(await runs(sessions)) < count:
        assert loop.time() < deadline, f"fewer than {count} daily runs recorded"
        await asyncio.sleep(0.1)


async def yesterday_sent(sessions: SessionFactory, make_worker: Any) -> MeteringWorker:
    await generate_usage(
        sessions, organizations=2, start=TODAY - 2 * DAY, end=TODAY, readings_per_org=50, seed=8
    )
    worker: MeteringWorker = make_worker()
    await worker.start()
    await drain(worker, sessions)
    return worker


async def add_event_record(sessions: SessionFactory, event_id: str, age: timedelta) -> None:
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO stripe_events (event_id, event_type, processed_at)"
                " VALUES (:e, 'customer.updated', :at)"
            ),
            {"e": event_id, "at": datetime.now(UTC) - age},
        )


async def test_the_daily_check_records_the_drift_of_an_event_stripe_no_longer_counts(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    worker = await yesterday_sent(sessions, make_worker)
    async with sessions() as session:
        identifier, value = (
            await session.execute(
                text(
                    "SELECT identifier, value FROM meter_reports WHERE status = 'sent'"
                    " AND event_name = 'temperature_readings' AND window_start = :day"
                    " ORDER BY identifier LIMIT 1"
                ),
                {"day": TODAY - DAY},
            )
        ).one()
    cancel(standin.state, "temperature_readings", identifier)  # the ledger says sent
    await add_event_record(sessions, "evt_old", timedelta(days=40))
    await add_event_record(sessions, "evt_recent", timedelta(days=2))

    await worker.queue.add(DAILY_CHECKS_JOB, {})
    await until_runs(sessions, 1)

    [run] = await runs(sessions)
    assert (run["period_start"], run["period_end"]) == (TODAY - DAY, TODAY)
    assert run["outcome"] == "drift"
    assert run["hours_with_drift"] == 1
    assert run["organizations_with_drift"] == 1
    assert run["readings_drift"] == Decimal(-value)
    assert run["events_pruned"] == 1
    assert run["job_id"] is not None
    async with sessions() as session:
        kept = await session.scalars(text("SELECT event_id FROM stripe_events"))
        assert list(kept) == ["evt_recent"]


async def test_a_day_the_ledger_and_stripe_agree_on_is_recorded_without_drift(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    worker = await yesterday_sent(sessions, make_worker)

    result = await worker.run_daily_checks()

    assert result["outcome"] == "no_drift"
    [run] = await runs(sessions)
    assert (run["outcome"], run["hours_with_drift"], run["readings_drift"]) == (
        "no_drift",
        0,
        0,
    )
    assert run["hours_compared"] > 0


async def test_the_daily_check_prunes_entitlement_notices_whose_job_was_added_long_ago(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    worker = await yesterday_sent(sessions, make_worker)
    org = await new_organization(sessions, "cus_notices")
    # Marked added 40 and 2 days ago, and one never marked; each made 40 days before.
    await add_notices(sessions, org, [40, 2, None], now=datetime.now(UTC), made_days_before=40)

    result = await worker.run_daily_checks()

    assert result["notices_pruned"] == 1
    [run] = await runs(sessions)
    assert run["notices_pruned"] == 1
    async with sessions() as session:
        kept = await session.scalars(text("SELECT job_id FROM entitlement_notices ORDER BY job_id"))
        assert list(kept) == ["notice-1", "notice-2"]


async def test_a_reconcile_that_cannot_read_the_meters_is_recorded_failed_and_the_job_fails(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    worker = await yesterday_sent(sessions, make_worker)
    client = make_client(standin)
    for meter in (await client.v1.billing.meters.list_async({"status": "active"})).data:
        await client.v1.billing.meters.deactivate_async(meter.id)

    job = await worker.queue.add(DAILY_CHECKS_JOB, {}, {"attempts": 1})
    await until_runs(sessions, 1)
    for _ in range(100):
        if await worker.queue.getJobState(job.id) == "failed":
            break
        await asyncio.sleep(0.1)

    [run] = await runs(sessions)
    assert run["outcome"] == "failed"
    assert "no active meter" in run["error"]
    assert await worker.queue.getJobState(job.id) == "failed"


async def test_two_workers_keep_one_daily_schedule(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    first, second = make_worker(), make_worker()
    await first.start()
    await second.start()

    schedulers = await first.queue.getJobSchedulers()

    daily = [entry for entry in schedulers if entry["key"] == DAILY_CHECKS_SCHEDULER]
    assert len(daily) == 1
    assert daily[0]["pattern"] == DAILY_CHECKS_SCHEDULE["pattern"]
    assert daily[0]["name"] == DAILY_CHECKS_JOB


async def test_with_two_workers_each_scheduled_run_happens_once(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    every = {"every": 400}  # the daily schedule, sped up
    workers = [make_worker(daily_schedule=every), make_worker(daily_schedule=every)]
    for worker in workers:
        await worker.start()

    await until_runs(sessions, 3)
    for worker in workers:
        await worker.stop()

    job_ids = [run["job_id"] for run in await runs(sessions)]
    assert len(job_ids) == len(set(job_ids))
