"""PostgreSQL failing under the worker: its connections terminated, then the database gone
from the network for a while."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import RunningStandin, StandinConfig
from sensor_billing.jobs.worker import WORKER_APPLICATION_NAME
from tests.faults.checks import (
    assert_usage_exact,
    control,
    days_of_usage,
    ledger_counts,
    settle,
    standin_state,
)
from tests.faults.servers import CountingStripeHTTPClient, TcpProxy
from tests.metering.conftest import DAY
from tests.metering.test_worker_process import wait_for
from tests.support.databases import terminate_backends

pytestmark = pytest.mark.faults


async def accepted(standin: RunningStandin) -> int:
    return len((await standin_state(standin))["events"])


async def test_worker_connections_terminated_mid_run_bill_every_window_once(
    sessions: SessionFactory,
    standin: RunningStandin,
    start_worker: Any,
    observe: Any,
    stripe_calls: CountingStripeHTTPClient,
) -> None:
    orgs = await days_of_usage(sessions, organizations=6, days=10, seed=50)
    await control(standin, "config", StandinConfig(processing_latency_seconds=0.03))
    _, sweeps = await start_worker()
    total = (await ledger_counts(sessions))["pending"]
    rounds = terminated = 0

    async def terminate_until_most_are_sent() -> None:
        # The worker's backends die mid-transaction: before, during and after Stripe calls.
        nonlocal rounds, terminated
        while await accepted(standin) < total * 0.8:
            killed = await terminate_backends(sessions, WORKER_APPLICATION_NAME)
            rounds, terminated = rounds + 1, terminated + killed
            await asyncio.sleep(0.15)

    terminator = asyncio.create_task(terminate_until_most_are_sent())
    try:
        await asyncio.wait_for(asyncio.shield(terminator), 60)
    finally:
        terminator.cancel()
    assert terminated >= 5, f"only {terminated} connections terminated in {rounds} rounds"
    await settle(sessions, within=90)

    counts = await assert_usage_exact(sessions, standin, orgs, DAY)
    observe(
        fault="PostgreSQL: worker connections terminated",
        termination_rounds=rounds,
        connections_terminated=terminated,
        **asdict(sweeps),
        **counts,
        **stripe_calls.counts(),
    )


async def test_worker_database_unreachable_for_a_while_bills_every_window_once(
    sessions: SessionFactory,
    standin: RunningStandin,
    start_worker: Any,
    database_url: str,
    observe: Any,
    stripe_calls: CountingStripeHTTPClient,
) -> None:
    orgs = await days_of_usage(sessions, organizations=6, days=10, seed=51)
    await control(standin, "config", StandinConfig(processing_latency_seconds=0.03))
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        _, sweeps = await start_worker(database_url=through_proxy)
        total = (await ledger_counts(sessions))["pending"]
        for share in (1 / 3, 2 / 3):

            async def reached(share: float = share) -> bool:
                return await accepted(standin) >= total * share

            await wait_for(reached, 60, f"{share:.0%} of the sends")
            await proxy.cut()  # open connections dropped, new ones refused
            await asyncio.sleep(1.5)
            await proxy.restore()
        await settle(sessions, within=90)
    finally:
        await proxy.close()
    assert proxy.connections_dropped > 0

    counts = await assert_usage_exact(sessions, standin, orgs, DAY)
    observe(
        fault="PostgreSQL unreachable from the worker (1.5 s, twice)",
        outages=proxy.cuts - 1,
        connections_dropped=proxy.connections_dropped,
        **asdict(sweeps),
        **counts,
        **stripe_calls.counts(),
    )
