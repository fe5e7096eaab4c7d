"""A `meter:report` job added by Node BullMQ, as the TypeScript backend adds it, is reported like
any other: the Python worker takes it off the shared queue, gives it a ledger row, honours the
job's own retry options, and Stripe counts it once, however it is retried or swept.

The producer is real Node BullMQ (tests/support/node_producer, installed by
scripts/ensure-node-producer), so these tests also pin the two libraries' queue format.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bullmq import Job
from sqlalchemy import make_url, select, text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import MeterReport
from sensor_billing.devtools.stripe_standin import FaultPlan, RunningStandin
from sensor_billing.jobs import QueueNames
from sensor_billing.jobs.connection import open_queue
from sensor_billing.jobs.registry import METER_REPORT_JOB_OPTIONS
from sensor_billing.settings import Settings
from tests.faults.servers import TcpProxy
from tests.metering.conftest import FAST_JOB_OPTIONS, drain

PRODUCER = Path(__file__).resolve().parents[1] / "support" / "node_producer"
NOW = datetime.now(UTC)


def require_node_producer() -> None:
    if shutil.which("node") and (PRODUCER / "node_modules" / "bullmq").is_dir():
        return
    message = f"node or {PRODUCER}/node_modules is missing: run scripts/ensure-node-producer"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


async def add_with_node(redis_url: str, data: dict[str, Any], options: dict[str, Any]) -> str:
    """`queue.add('meter:report', data, options)` in Node BullMQ; the new job's id."""
    require_node_producer()
    process = await asyncio.create_subprocess_exec(
        "node",
        str(PRODUCER / "add_meter_report.js"),
        json.dumps({"redisUrl": redis_url, "data": data, "options": options}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return str(json.loads(out)["id"])


async def organization(
    sessions: SessionFactory, customer: str = "cus_node", org_id: uuid.UUID | None = None
) -> uuid.UUID:
    org_id = org_id or uuid.uuid4()
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO organizations (id, name, stripe_customer_id)"
                " VALUES (:id, 'Node producer org', :customer)"
            ),
            {"id": org_id, "customer": customer},
        )
    return org_id


async def wait_for_state(queue: Any, job_id: str, state: str, within: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (current := await queue.getJobState(job_id)) != state:
        assert loop.time() < deadline, f"job {job_id} is {current}, not {state}"
        await asyncio.sleep(0.05)


async def job_rows(sessions: SessionFactory) -> list[MeterReport]:
    async with sessions() as session:
        return list(await session.scalars(select(MeterReport).where(MeterReport.source == "job")))


def seed_data(org_id: uuid.UUID, value: Any = 42) -> dict[str, Any]:
    """The seed's MeterReportJobData, as the TypeScript backend writes it."""
    return {
        "organizationId": str(org_id),
        "eventName": "temperature_readings",
        "value": value,
        "timestamp": int(NOW.timestamp()) - 60,
    }


async def test_a_node_job_with_the_seed_options_is_reported_once(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, redis_url: str
) -> None:
    org_id = await organization(sessions)
    job_id = await add_with_node(redis_url, seed_data(org_id), METER_REPORT_JOB_OPTIONS)
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    try:
        # Python bullmq reads Node's options as written: the seed's retry policy applies.
        job = await Job.fromId(queue, job_id)
        assert job.name == "meter:report"
        assert job.opts["attempts"] == 5
        assert job.opts["backoff"] == {"type": "exponential", "delay": 5000}

        worker = make_worker()
        await worker.start()
        await wait_for_state(queue, job_id, "completed")
    finally:
        await queue.close()

    [row] = await job_rows(sessions)
    assert row.identifier.startswith(f"job.{job_id}.")
    assert (row.status, row.value, row.stripe_customer_id) == ("sent", 42, "cus_node")
    events = standin.state.accepted_events()
    assert [(e.customer, e.event_name, e.value, e.identifier) for e in events] == [
        ("cus_node", "temperature_readings", "42", row.identifier)
    ]
    assert events[0].timestamp == seed_data(org_id)["timestamp"]


async def test_a_node_job_gets_its_own_attempts_then_the_sweep_reports_its_row_once(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, redis_url: str
) -> None:
    """Stripe down through all of a Node job's attempts: the job fails, its ledger row stays
    pending; after the outage the sweep gives that same row a new job, and Stripe gets the
    report once, under the row's identifier (not a second row's)."""
    org_id = await organization(sessions)
    standin.state.set_faults(FaultPlan(server_error=1.0))
    options = {**FAST_JOB_OPTIONS, "attempts": 3}
    job_id = await add_with_node(redis_url, seed_data(org_id), options)
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    worker = make_worker()
    try:
        await worker.start()
        await wait_for_state(queue, job_id, "failed")
        job = await Job.fromId(queue, job_id)
        assert job.attemptsMade == 3
    finally:
        await queue.close()
    # One row, whatever ran meanwhile: the worker's start-up sweep may already have given the
    # pending row a job of its own (its attempts count here too).
    [row] = await job_rows(sessions)
    assert row.status == "pending"
    assert row.attempts >= 3
    assert (row.last_error or "").startswith("APIError")
    assert standin.state.accepted_events() == []

    standin.state.set_faults(FaultPlan())
    await drain(worker, sessions)

    [row] = await job_rows(sessions)
    assert row.status == "sent"
    assert [e.identifier for e in standin.state.accepted_events()] == [row.identifier]


async def test_a_node_job_with_bad_data_fails_at_once_and_leaves_no_row(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, redis_url: str
) -> None:
    org_id = await organization(sessions)
    # 2.5 sensors: JavaScript has one number type; the worker must not round it onto an invoice.
    job_id = await add_with_node(redis_url, seed_data(org_id, value=2.5), METER_REPORT_JOB_OPTIONS)
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    try:
        worker = make_worker()
        await worker.start()
        await wait_for_state(queue, job_id, "failed")
        job = await Job.fromId(queue, job_id)
    finally:
        await queue.close()
    assert job.attemptsMade == 1
    assert "value" in job.failedReason
    assert await job_rows(sessions) == []
    assert standin.state.accepted_events() == []


async def test_a_node_job_for_an_organization_not_there_yet_is_reported_once_it_is(
    sessions: SessionFactory,
    standin: RunningStandin,
    make_worker: Any,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A producer may enqueue before the organization's row is committed. The job waits,
    delayed, with a warning naming the organization, using none of its attempts however often
    it is tried (no row, nothing billed), and is reported once the organization exists."""
    org_id = uuid.uuid4()
    options = {**FAST_JOB_OPTIONS, "attempts": 2}
    job_id = await add_with_node(redis_url, seed_data(org_id), options)
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    worker = make_worker()
    try:
        await worker.start()
        for _ in range(3):  # more tries than its attempts
            await wait_for_state(queue, job_id, "delayed")
            await (await Job.fromId(queue, job_id)).promote()
        await wait_for_state(queue, job_id, "delayed")
        assert f"no organization {org_id}" in caplog.text
        assert (await Job.fromId(queue, job_id)).attemptsMade == 0
        assert await job_rows(sessions) == []

        await organization(sessions, "cus_late", org_id)
        await (await Job.fromId(queue, job_id)).promote()
        await wait_for_state(queue, job_id, "completed")
    finally:
        await queue.close()
    [row] = await job_rows(sessions)
    assert row.status == "sent"
    assert [(e.customer, e.identifier) for e in standin.state.accepted_events()] == [
        ("cus_late", row.identifier)
    ]


async def test_a_node_job_dated_in_the_future_for_a_missing_organization_stops_waiting(
    sessions: SessionFactory,
    standin: RunningStandin,
    make_worker: Any,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job whose row cannot be written waits delayed until Stripe's 35-day limit. The limit
    is counted from its timestamp, or from when it was added when that is earlier: a timestamp
    a year ahead (the wire format allows up to 9999) must not keep a job for an organization
    that never comes retrying every ten minutes for more than a year."""
    org_id = uuid.uuid4()
    data = {**seed_data(org_id), "timestamp": int(NOW.timestamp()) + 365 * 86_400}
    job_id = await add_with_node(redis_url, data, {**FAST_JOB_OPTIONS, "attempts": 2})
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    later = NOW + timedelta(days=36)
    worker = make_worker(clock=lambda: later)
    try:
        await worker.start()
        await wait_for_state(queue, job_id, "failed")
        job = await Job.fromId(queue, job_id)
        assert "35-day limit" in job.failedReason
        assert f"no organization {org_id}" in job.failedReason
    finally:
        await queue.close()
    assert await job_rows(sessions) == []
    assert standin.state.accepted_events() == []


async def test_a_node_job_that_came_while_the_database_was_down_survives_the_failed_set_trim(
    sessions: SessionFactory,
    standin: RunningStandin,
    make_worker: Any,
    worker_settings: Settings,
    database_url: str,
    redis_url: str,
) -> None:
    """With PostgreSQL unreachable no ledger row can be written: the job is the only record of
    that usage. bullmq trims the whole failed set to each failing job's `removeOnFail` (the
    seed's 1,000), other producers' jobs included, so such a job must not wait there: it waits
    delayed, using none of its attempts, and Stripe gets it once when the database is back,
    however many jobs failed meanwhile."""
    org_id = await organization(sessions)
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    try:
        worker = make_worker(worker_settings.model_copy(update={"database_url": through_proxy}))
        await worker.start()
        await proxy.cut()
        job_id = await add_with_node(
            redis_url, seed_data(org_id), {**FAST_JOB_OPTIONS, "attempts": 2}
        )
        await wait_for_state(queue, job_id, "delayed")
        # More jobs than removeOnFail fail meanwhile (data no worker can use).
        trim = int(METER_REPORT_JOB_OPTIONS["removeOnFail"]) + 1
        await queue.addBulk(
            [
                {
                    "name": "meter:report",
                    "data": {"value": 2.5},
                    "opts": {**METER_REPORT_JOB_OPTIONS, "jobId": f"bad-{index}", "attempts": 1},
                }
                for index in range(trim)
            ]
        )
        await wait_for_state(queue, f"bad-{trim - 1}", "failed", within=60)
        assert await queue.getJobState(job_id) in ("delayed", "waiting", "active")
        assert await job_rows(sessions) == []

        await proxy.restore()
        await wait_for_state(queue, job_id, "completed")
    finally:
        await queue.close()
        await proxy.close()
    job = await Job.fromId(queue, job_id)
    assert job.attemptsMade == 1  # the successful one: waiting for the database used none
    [row] = await job_rows(sessions)
    assert row.status == "sent"
    assert [e.identifier for e in standin.state.accepted_events()] == [row.identifier]
