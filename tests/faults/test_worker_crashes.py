"""`sensor-billing worker` processes SIGKILLed during sends and restarted: two racing on one
queue, and one killed after Stripe accepted events whose outcomes it had not committed yet."""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import RunningStandin, StandinConfig
from sensor_billing.jobs import QueueNames
from sensor_billing.jobs.connection import open_queue
from sensor_billing.jobs.worker import WORKER_APPLICATION_NAME
from sensor_billing.metering.outbox import sweep
from tests.faults.checks import (
    assert_usage_exact,
    control,
    days_of_usage,
    ledger_counts,
    settle,
    standin_state,
)
from tests.faults.servers import start_worker_process
from tests.metering.conftest import DAY
from tests.metering.test_send_ledger import waiting_group_commits
from tests.metering.test_worker_process import wait_for
from tests.support.databases import terminate_backends

pytestmark = pytest.mark.faults

KILLS = 3


async def test_two_workers_killed_during_sends_and_restarted_bill_every_window_once(
    sessions: SessionFactory,
    standin: RunningStandin,
    worker_env: dict[str, str],
    redis_url: str,
    tmp_path: Path,
    observe: Any,
) -> None:
    orgs = await days_of_usage(sessions, organizations=6, days=10, seed=60)
    # Slow enough that a kill lands while calls are in flight.
    await control(standin, "config", StandinConfig(processing_latency_seconds=0.15))
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    calls_in_flight_at_kills = 0
    with (tmp_path / "workers.log").open("w+b") as log:
        # Both start at once: both close windows at start-up, both take jobs from one queue.
        workers = [start_worker_process(worker_env, log) for _ in range(2)]
        try:

            async def windows_closed() -> bool:
                return bool(await ledger_counts(sessions))

            await wait_for(windows_closed, 60, "the first close")
            total = sum((await ledger_counts(sessions)).values())
            for kill in range(KILLS):

                async def sending(share: float = (kill + 1) / (KILLS + 2)) -> bool:
                    return len((await standin_state(standin))["events"]) >= total * share

                await wait_for(sending, 60, f"kill {kill + 1}")
                with standin.state.lock:
                    calls_in_flight_at_kills += len(standin.state.in_flight)
                victim = kill % 2
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait(10)
                workers[victim] = start_worker_process(worker_env, log)
                restarts = kill + 1

                async def restarted(started: int = 2 + restarts) -> bool:
                    # A SIGTERM that reaches a worker still importing its modules ends it
                    # by the signal (nothing was in flight): the test stops workers that run.
                    # pread: the workers write through this file's shared offset.
                    written = os.pread(log.fileno(), os.fstat(log.fileno()).st_size, 0)
                    return written.count(b"worker started") >= started

                await wait_for(restarted, 60, f"restart {restarts}")

            async def sweep_after_cool_down() -> Mapping[str, Any]:
                # The schedule sweeps every few minutes and revives a job that ran out of
                # attempts (a job stalled twice fails) after a cool-down: both, now.
                return asdict(
                    await sweep(sessions, queue, now=datetime.now(UTC), revive_after=timedelta(0))
                )

            sweeps = await settle(sessions, within=90, sweep=sweep_after_cool_down)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            exits = [worker.wait(30) for worker in workers]
            await queue.close()
        log.seek(0)
        worker_log = log.read().decode(errors="replace")
    assert exits == [0, 0], worker_log[-3000:]
    assert calls_in_flight_at_kills > 0, "no kill landed during a send"

    counts = await assert_usage_exact(sessions, standin, orgs, DAY)
    observe(
        fault="worker processes SIGKILLed x3, two racing",
        kills=KILLS,
        calls_in_flight_at_kills=calls_in_flight_at_kills,
        **asdict(sweeps),
        **counts,
    )


async def test_worker_killed_after_stripe_accepted_and_before_its_group_commit_bills_once(
    sessions: SessionFactory,
    standin: RunningStandin,
    worker_env: dict[str, str],
    redis_url: str,
    tmp_path: Path,
    observe: Any,
) -> None:
    """The outcomes of jobs whose events Stripe accepted are committed together, a moment
    later. A worker that dies in that moment leaves their rows pending: the restarted worker
    sends them again under the same identifiers and idempotency keys, and Stripe answers
    that it has them. Here the moment is stretched: the test holds a lock that makes the
    group commit wait, then SIGKILLs the worker."""
    orgs = await days_of_usage(sessions, organizations=6, days=10, seed=61)
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    with (tmp_path / "worker.log").open("w+b") as log:
        worker = start_worker_process(worker_env, log)
        try:

            async def windows_closed() -> bool:
                return bool(await ledger_counts(sessions))

            await wait_for(windows_closed, 60, "the first close")
            blocker = sessions()
            # Claims take ROW SHARE and go on; the outcomes' UPDATE waits for this lock.
            await blocker.execute(text("LOCK TABLE meter_reports IN SHARE MODE"))
            try:

                async def group_commit_waiting() -> bool:
                    waiting = await waiting_group_commits(sessions)
                    return bool(waiting) and bool(standin.state.accepted_events())

                await wait_for(group_commit_waiting, 60, "a group commit waiting for the lock")
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
                # PostgreSQL ends a dead client's session when it next reads from it; this one
                # waits for a lock, so it is ended here, as the crash's reset connection would.
                await terminate_backends(sessions, WORKER_APPLICATION_NAME)
            finally:
                await blocker.rollback()
                await blocker.close()
            async with sessions() as session:
                pending = set(
                    await session.scalars(
                        text("SELECT identifier FROM meter_reports WHERE status = 'pending'")
                    )
                )
            accepted = {event.identifier for event in standin.state.accepted_events()}
            caught = accepted & pending
            assert caught, "no event Stripe accepted was left pending by the kill"

            worker = start_worker_process(worker_env, log)

            async def sweep_after_cool_down() -> Mapping[str, Any]:
                # A job whose worker died is handed on after its lock; one that stalled twice
                # fails and is revived by the sweep after a cool-down: both, now.
                return asdict(
                    await sweep(sessions, queue, now=datetime.now(UTC), revive_after=timedelta(0))
                )

            sweeps = await settle(sessions, within=90, sweep=sweep_after_cool_down)
        finally:
            worker.send_signal(signal.SIGTERM)
            exit_code = worker.wait(30)
            await queue.close()
        log.seek(0)
        worker_log = log.read().decode(errors="replace")
    assert exit_code == 0, worker_log[-3000:]

    counts = await assert_usage_exact(sessions, standin, orgs, DAY)
    # Sent again, each answered from Stripe's idempotency layer or refused as a duplicate.
    assert counts["idempotent_replays"] + counts["duplicates_refused"] >= len(caught), counts
    observe(
        fault="worker SIGKILLed between Stripe's acceptance and its group commit",
        accepted_not_committed_at_kill=len(caught),
        **asdict(sweeps),
        **counts,
    )
