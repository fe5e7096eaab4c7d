"""Redis restarted mid-run, without persistence: every job is gone; the ledger is not."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

import pytest

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import RunningStandin, StandinConfig
from tests.faults.checks import (
    assert_usage_exact,
    control,
    days_of_usage,
    ledger_counts,
    settle,
    standin_state,
)
from tests.faults.servers import CountingStripeHTTPClient, RedisServer
from tests.metering.conftest import DAY
from tests.metering.test_worker_process import wait_for

pytestmark = pytest.mark.faults


async def test_redis_restarted_mid_run_loses_jobs_but_no_usage(
    # Redis first: set up before the worker, torn down after it, as in production.
    own_redis: RedisServer,
    sessions: SessionFactory,
    standin: RunningStandin,
    start_worker: Any,
    observe: Any,
    stripe_calls: CountingStripeHTTPClient,
) -> None:
    orgs = await days_of_usage(sessions, organizations=6, days=10, seed=40)
    await control(standin, "config", StandinConfig(processing_latency_seconds=0.03))
    worker, sweeps = await start_worker(redis_url=own_redis.url)
    total = (await ledger_counts(sessions))["pending"]

    async def a_third_accepted() -> bool:
        return len((await standin_state(standin))["events"]) >= total // 3

    await wait_for(a_third_accepted, 60, "the first sends")
    own_redis.restart()  # SIGKILL, then an empty server on the same port
    pending_at_restart = (await ledger_counts(sessions)).get("pending", 0)
    assert pending_at_restart > 0, "restarted too late to matter"

    # The workers' own check puts the close-windows schedule back into the empty Redis.
    async def schedule_back() -> bool:
        try:
            return bool(await worker.queue.isJobScheduler("meter-close-windows"))
        except Exception:  # still reconnecting
            return False

    await wait_for(schedule_back, 30, "the close-windows schedule to be re-created")
    # The sweep (run by that schedule) re-enqueues the pending rows whose jobs Redis lost.
    await settle(sessions, within=90)

    counts = await assert_usage_exact(sessions, standin, orgs, DAY)
    observe(
        fault="Redis restarted, no persistence",
        redis_restarts=own_redis.restarts,
        rows_pending_at_restart=pending_at_restart,
        **asdict(sweeps),
        **counts,
        **stripe_calls.counts(),
    )


async def test_worker_stopped_while_redis_is_down_stops_after_its_job_lock(
    own_redis: RedisServer, sessions: SessionFactory, standin: RunningStandin, start_worker: Any
) -> None:
    await days_of_usage(sessions, organizations=2, days=3, seed=41)
    await control(standin, "config", StandinConfig(processing_latency_seconds=1.0))
    worker, _ = await start_worker(redis_url=own_redis.url, meter_job_lock_seconds=2)

    async def sending() -> bool:
        with standin.state.lock:
            return bool(standin.state.in_flight)

    await wait_for(sending, 30, "a call in flight")
    own_redis.kill()
    loop = asyncio.get_running_loop()
    started = loop.time()
    # bullmq's own close waits, uncancellable, for the job that cannot report its completion
    # to the dead Redis; before the fix this did not return within minutes.
    await asyncio.wait_for(asyncio.shield(worker.stop()), 20)
    assert loop.time() - started < 2 * 2 + 2  # two job-lock periods, and some slack
