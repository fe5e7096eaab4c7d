"""Stripe's limits respected, and an outage longer than the retries does not lose usage."""

from __future__ import annotations

import asyncio
import signal
import uuid
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select, text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import MeterReport
from sensor_billing.devtools.stripe_standin import FaultPlan, RunningStandin, StandinConfig
from sensor_billing.errors import ConfigurationError
from sensor_billing.jobs import QueueNames
from sensor_billing.jobs.connection import open_queue
from sensor_billing.metering import outbox
from sensor_billing.metering.outbox import FAILED_JOBS_SCANNED, sweep
from sensor_billing.metering.service import ClosePolicy, close_windows
from sensor_billing.settings import Settings, load_settings
from tests.metering.conftest import drain, ledger_counts
from tests.metering.test_reporting import assert_stripe_has_exactly_the_usage, month_of_usage
from tests.metering.test_worker_process import logs, start_worker, wait_for, worker_env  # noqa: F401
from tests.stripe_api.test_rate_limit import most_in_one_second
from tests.support.usage_data import generate_usage

NOW = datetime.now(UTC)


async def test_calls_for_one_customer_and_meter_never_overlap(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    # One organization, a month of daily windows: ~30 jobs per meter for the same customer,
    # run by 8 concurrent slots. Stripe answers 429 to overlapping calls for a pair.
    await generate_usage(
        sessions, organizations=1, start=NOW - timedelta(days=30), end=NOW, readings_per_org=400
    )
    standin.state.configure(StandinConfig(processing_latency_seconds=0.03))
    worker = make_worker()
    await worker.start()
    await drain(worker, sessions)
    assert len(standin.state.accepted_events()) > 40
    assert standin.state.counters_snapshot().rate_limited == 0


async def test_account_rate_limit_keeps_every_worker_under_stripes_budget(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, worker_settings: Settings
) -> None:
    await month_of_usage(sessions, organizations=6)
    # The stand-in refuses a 41st call within any second; two workers share a 30/s budget.
    standin.state.configure(StandinConfig(account_rate_limit_per_second=40))
    limited = worker_settings.model_copy(update={"meter_rate_limit_per_second": 30.0})
    first, second = make_worker(limited), make_worker(limited)
    await first.start()
    await second.start()
    await drain(first, sessions, within=90)
    assert len(standin.state.accepted_events()) > 100
    assert standin.state.counters_snapshot().rate_limited == 0


async def test_two_worker_processes_at_a_low_account_limit_never_exceed_it_in_any_second(
    sessions: SessionFactory,
    standin: RunningStandin,
    worker_env: dict[str, str],  # noqa: F811 (the shared fixture, requested)
    logs: IO[bytes],  # noqa: F811 (the shared fixture, requested)
) -> None:
    """Each process asks Redis for several calls at a time and starts them itself: together
    they still start no more than the account's rate in any second, counted where Stripe
    counts them (the stand-in refuses the call over its limit and records when it accepted
    each one)."""
    rate = 20
    orgs = await generate_usage(
        sessions, organizations=4, start=NOW - timedelta(days=10), end=NOW, readings_per_org=200
    )
    standin.state.configure(StandinConfig(account_rate_limit_per_second=rate))
    env = {**worker_env, "METER_RATE_LIMIT_PER_SECOND": str(rate)}
    workers = [start_worker(env, logs) for _ in range(2)]

    async def nothing_pending() -> bool:
        counts = await ledger_counts(sessions)
        return bool(counts) and counts.get("pending", 0) == 0

    try:
        await wait_for(nothing_pending, 90, "both workers to send everything")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        exits = [worker.wait(30) for worker in workers]
    assert exits == [0, 0]

    events = standin.state.accepted_events()
    assert len(events) > 3 * rate, "too few calls to say anything"
    assert standin.state.counters_snapshot().rate_limited == 0
    assert most_in_one_second([event.created for event in events]) <= rate
    assert_stripe_has_exactly_the_usage(orgs, standin)


async def test_rows_whose_jobs_ran_out_of_attempts_in_an_outage_are_sent_after_it(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, redis_url: str
) -> None:
    orgs = await month_of_usage(sessions, organizations=2)
    standin.state.set_faults(FaultPlan(server_error=1.0))  # Stripe is down
    worker = make_worker()
    await worker.start()
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    try:
        pending = (await ledger_counts(sessions))["pending"]
        for _ in range(200):  # every job tries 5 times (fast backoff), then fails
            if (await queue.getJobCounts("failed"))["failed"] == pending:
                break
            await asyncio.sleep(0.1)
        counts = await queue.getJobCounts("failed", "waiting", "delayed", "active", "completed")
        assert counts["failed"] == pending, (counts, await ledger_counts(sessions))
    finally:
        await queue.close()
    async with sessions() as session:
        attempts = await session.scalar(
            select(func.min(MeterReport.attempts)).where(MeterReport.status == "pending")
        )
    assert attempts == 5
    assert (await ledger_counts(sessions))["pending"] == pending  # not abandoned

    standin.state.set_faults(FaultPlan())  # Stripe is back
    await drain(worker, sessions)  # the sweep revives the exhausted jobs
    assert_stripe_has_exactly_the_usage(orgs, standin)


@pytest.mark.parametrize("rate", ["0", "-5", "1001"])
def test_rate_limit_outside_stripes_range_stops_start_up(
    rate: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METER_RATE_LIMIT_PER_SECOND", rate)
    with pytest.raises(ConfigurationError, match="METER_RATE_LIMIT_PER_SECOND"):
        load_settings()


async def test_one_sweep_enqueues_a_backlog_larger_than_its_batch(
    sessions: SessionFactory, redis_url: str
) -> None:
    await month_of_usage(sessions, organizations=3)
    now = datetime.now(UTC)
    async with unit_of_work(sessions) as session:
        await close_windows(session, ClosePolicy(window=timedelta(days=1), grace=timedelta(0)), now)
    pending = (await ledger_counts(sessions))["pending"]
    assert pending > 20
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    try:
        result = await sweep(sessions, queue, now=now + timedelta(seconds=1), batch=7)
        assert result.enqueued == pending
        assert (await queue.getJobCounts("waiting"))["waiting"] == pending
        again = await sweep(sessions, queue, now=now + timedelta(seconds=1), batch=7)
        assert again.enqueued == 0
    finally:
        await queue.close()


async def test_stop_does_not_wait_for_the_next_scheduled_close(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, worker_settings: Settings
) -> None:
    # The close-windows schedule is 5 minutes away; closing must not wait for it (with
    # redis-py 8, bullmq's close waited minutes here: see the redis pin in pyproject).
    worker = make_worker(worker_settings.model_copy(update={"meter_close_interval_seconds": 300}))
    await worker.start()
    await asyncio.sleep(1)  # idle, blocked waiting for the scheduled job
    await asyncio.wait_for(worker.stop(), timeout=5)


async def test_worker_recreates_the_close_schedule_after_redis_lost_its_data(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, redis_url: str
) -> None:
    worker = make_worker(schedule_check_seconds=0.2)
    await worker.start()
    redis = Redis.from_url(redis_url)
    try:
        await redis.flushdb()  # what a Redis restart without persistence does
        for _ in range(50):
            if await worker.queue.isJobScheduler("meter-close-windows"):
                break
            await asyncio.sleep(0.1)
        assert await worker.queue.isJobScheduler("meter-close-windows")
    finally:
        await redis.aclose()


async def test_a_failed_job_of_another_producer_is_revived_behind_many_that_stay_failed(
    sessions: SessionFactory, redis_url: str
) -> None:
    """A producer's failed jobs with data no worker can use stay failed for good (Node BullMQ
    keeps failed jobs unless told otherwise). However many there are, a newer job of that
    producer that failed only because the database was unreachable is revived."""
    org_id = uuid.uuid4()
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO organizations (id, name, stripe_customer_id)"
                " VALUES (:id, 'Other producer org', 'cus_other')"
            ),
            {"id": org_id},
        )
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    try:
        redis = queue.redisConnection.conn
        prefix = queue.toKey("")
        finished_ms = int((NOW - timedelta(hours=1)).timestamp() * 1000)
        async with redis.pipeline(transaction=False) as pipe:
            for index in range(FAILED_JOBS_SCANNED):
                pipe.hset(
                    f"{prefix}bad-{index}",
                    mapping={"name": "meter:report", "data": '{"value": 2.5}', "timestamp": 1},
                )
                pipe.zadd(f"{prefix}failed", {f"bad-{index}": finished_ms + index})
            await pipe.execute()
        # Failed as the worker fails it with PostgreSQL unreachable: after the bad ones.
        await add_failed_job(queue, "node-7", finished_ms + FAILED_JOBS_SCANNED, org_id)

        await sweep(sessions, queue, now=datetime.now(UTC), revive_after=timedelta(minutes=10))

        assert await queue.getJobState("node-7") == "waiting"
    finally:
        await queue.close()


async def add_failed_job(
    queue: Any, job_id: str, finished_ms: int, organization_id: uuid.UUID | None = None
) -> None:
    """A failed `meter:report` job as the worker leaves it: for `organization_id`, one that
    failed only because the database was unreachable; without, data no worker can use."""
    redis = queue.redisConnection.conn
    prefix = queue.toKey("")
    if organization_id is None:
        await redis.hset(
            f"{prefix}{job_id}",
            mapping={"name": "meter:report", "data": '{"value": 2.5}', "timestamp": 1},
        )
    else:
        data = {"organizationId": str(organization_id), "eventName": "active_sensors", "value": 3}
        await queue.add("meter:report", data, {"jobId": job_id})
        await redis.lrem(f"{prefix}wait", 0, job_id)
        await redis.hset(
            f"{prefix}{job_id}", mapping={"finishedOn": finished_ms, "attemptsMade": 5}
        )
    await redis.zadd(f"{prefix}failed", {job_id: finished_ms})


async def test_a_sweep_reads_a_bounded_part_of_the_failed_set_and_the_next_sweeps_go_on(
    sessions: SessionFactory, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another producer may keep every failed job: read whole at every close, the failed set
    would cost more each time. A sweep reads a bounded part of it and the next sweep goes on
    after that part, so a due job behind the bound is revived by a later sweep, not lost; a
    page never splits jobs that finished in the same millisecond (the next sweep starts after
    that millisecond); and a job that lands behind where the sweeps are (its failure reached
    Redis late) is revived by the next round."""
    monkeypatch.setattr(outbox, "FAILED_JOBS_SCANNED", 4)
    monkeypatch.setattr(outbox, "FAILED_JOBS_PER_SWEEP", 10)
    org_id = uuid.uuid4()
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO organizations (id, name, stripe_customer_id)"
                " VALUES (:id, 'Other producer org', 'cus_other')"
            ),
            {"id": org_id},
        )
    finished_ms = int((NOW - timedelta(hours=1)).timestamp() * 1000)
    # Jobs 8 to 13 finished in the same millisecond; so did node-tied, which sorts after them.
    scores = [finished_ms + min(index, 8) + max(index - 13, 0) for index in range(25)]
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)

    async def state(job_id: str) -> str:
        return str(await queue.getJobState(job_id))

    async def sweep_once() -> None:
        await sweep(sessions, queue, now=datetime.now(UTC), revive_after=timedelta(minutes=10))

    try:
        for index, score in enumerate(scores):
            await add_failed_job(queue, f"bad-{index:02}", score)
        await add_failed_job(queue, "node-tied", finished_ms + 8, org_id)
        await add_failed_job(queue, "node-last", finished_ms + 100, org_id)

        await sweep_once()
        assert await state("node-tied") == "waiting"  # its millisecond was read whole
        assert await state("node-last") == "failed"  # beyond this sweep's part
        await add_failed_job(queue, "node-late", finished_ms - 1, org_id)
        for _ in range(2):
            await sweep_once()
        assert await state("node-last") == "waiting"
        assert await state("node-late") == "failed"  # behind the sweeps: the next round
        await sweep_once()
        assert await state("node-late") == "waiting"
    finally:
        await queue.close()
