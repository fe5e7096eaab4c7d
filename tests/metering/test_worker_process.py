"""The real `sensor-billing worker` process: killed mid-batch, or asked to stop."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import select

from sensor_billing.db import SessionFactory
from sensor_billing.db.schema import MeterReport
from sensor_billing.devtools.stripe_standin import DEFAULT_API_KEY, RunningStandin, StandinConfig
from tests.metering.conftest import ledger_counts
from tests.metering.test_reporting import assert_stripe_has_exactly_the_usage, month_of_usage
from tests.support.databases import advisory_locks_held

COMMAND = str(Path(sys.executable).parent / "sensor-billing")


@pytest.fixture
def worker_env(database_url: str, redis_url: str, standin: RunningStandin) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STRIPE_API_KEY": DEFAULT_API_KEY,
        "STRIPE_API_BASE": standin.url,
        "STRIPE_METER_EVENTS_BASE": standin.url,
        "METER_WINDOW_SECONDS": "86400",
        "METER_GRACE_SECONDS": "0",
        "METER_STREAM_THRESHOLD": "1000000",
        "METER_RATE_LIMIT_PER_SECOND": "1000",
        "METER_WORKER_CONCURRENCY": "8",
        "METER_JOB_LOCK_SECONDS": "2",
    }


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[IO[bytes]]:
    with (tmp_path / "worker.log").open("w+b") as log:
        yield log


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A worker left behind by a killed test run would take later runs' jobs: tie its life to
    the test process (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start_worker(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [COMMAND, "worker"], env=env, stdout=log, stderr=log, preexec_fn=die_with_parent
    )


async def wait_for(condition: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_worker_killed_mid_batch_and_restarted_reports_everything_once(
    sessions: SessionFactory, standin: RunningStandin, worker_env: dict[str, str], logs: IO[bytes]
) -> None:
    orgs = await month_of_usage(sessions, organizations=6)
    standin.state.configure(StandinConfig(processing_latency_seconds=0.02))
    first = start_worker(worker_env, logs)

    async def some_accepted() -> bool:
        return len(standin.state.accepted_events()) >= 40

    try:
        await wait_for(some_accepted, 60, "the first sends")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert (await ledger_counts(sessions)).get("pending", 0) > 0, "killed too late to matter"

    second = start_worker(worker_env, logs)

    async def nothing_pending() -> bool:
        return (await ledger_counts(sessions)).get("pending", 0) == 0

    try:
        await wait_for(nothing_pending, 90, "the restarted worker to finish")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    assert_stripe_has_exactly_the_usage(orgs, standin)


async def test_sigterm_lets_running_sends_finish_and_nothing_is_half_recorded(
    sessions: SessionFactory, standin: RunningStandin, worker_env: dict[str, str], logs: IO[bytes]
) -> None:
    await month_of_usage(sessions, organizations=4)
    standin.state.configure(StandinConfig(processing_latency_seconds=0.3))
    worker = start_worker(worker_env, logs)

    async def sending() -> bool:
        return len(standin.state.accepted_events()) >= 8

    await wait_for(sending, 60, "sends to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0

    async with sessions() as session:
        sent = set(
            await session.scalars(
                select(MeterReport.identifier).where(MeterReport.status == "sent")
            )
        )
    accepted = {event.identifier for event in standin.state.accepted_events()}
    assert accepted == sent  # every accepted send is recorded as sent, and nothing more
    assert (await ledger_counts(sessions)).get("pending", 0) > 0  # it stopped, not drained
    logs.seek(0)
    assert b"letting running sends finish" in logs.read()


async def test_the_customer_and_meter_locks_of_a_killed_worker_end_with_its_session(
    sessions: SessionFactory, standin: RunningStandin, worker_env: dict[str, str], logs: IO[bytes]
) -> None:
    """A job holds its (customer, meter) pair in PostgreSQL while it calls Stripe, as a lock of
    the worker's session: when the worker dies, PostgreSQL ends the session and its locks, so
    no pair stays held for the other workers."""
    await month_of_usage(sessions, organizations=4)
    standin.state.configure(StandinConfig(processing_latency_seconds=2.0))
    worker = start_worker(worker_env, logs)

    async def sending() -> bool:
        return bool(standin.state.in_flight) and await advisory_locks_held(sessions) > 0

    try:
        await wait_for(sending, 60, "a send holding its pair")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)

    async def released() -> bool:
        return await advisory_locks_held(sessions) == 0

    await wait_for(released, 10, "the dead worker's pair locks to end")


async def test_a_worker_stopped_while_it_starts_exits_cleanly(
    worker_env: dict[str, str], logs: IO[bytes]
) -> None:
    """A SIGTERM in the seconds the command spends importing and checking its servers, before
    the worker's own handler is in place, ends it with status 0 (nothing was in flight), not
    killed by the signal (-15)."""
    worker = start_worker(worker_env, logs)
    await asyncio.sleep(0.5)  # past the interpreter's start, well before the worker runs
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
