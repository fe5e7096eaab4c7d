"""Usage reaches the Stripe stand-in exactly once: through jobs, the stream, faults, replays."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
import stripe
from pydantic import SecretStr
from sqlalchemy import func, select, text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import MeterReport
from sensor_billing.devtools.stripe_standin import FaultPlan, RunningStandin
from sensor_billing.errors import StripeUnavailableError
from sensor_billing.jobs import MeterReportJobData, QueueNames, enqueue_meter_report
from sensor_billing.jobs.connection import open_queue
from sensor_billing.jobs.worker import run_worker
from sensor_billing.metering import stream as stream_module
from sensor_billing.metering.service import ClosePolicy, close_windows
from sensor_billing.metering.stream import MeterEventStream, stream_backlog
from sensor_billing.metering.windows import floor_to_window
from sensor_billing.settings import Settings
from tests.metering.conftest import DAY, FAST_JOB_OPTIONS, drain, ledger_counts
from tests.support.usage_data import GeneratedOrganization, generate_usage

NOW = datetime.now(UTC)


async def month_of_usage(sessions: SessionFactory, organizations: int = 10) -> list[Any]:
    return await generate_usage(
        sessions,
        organizations=organizations,
        start=NOW - timedelta(days=30),
        end=NOW,
        readings_per_org=250,
        without_customer=1,
        seed=11,
    )


def assert_stripe_has_exactly_the_usage(
    orgs: list[GeneratedOrganization], standin: RunningStandin
) -> None:
    """What Stripe accepted equals what was measured: readings summed, gauges at each close."""
    closed_through = floor_to_window(NOW, DAY)
    events = standin.state.accepted_events()
    assert events, "nothing reached the stand-in"
    assert all(count == 1 for count in standin.state.identifier_accept_counts().values())
    assert not standin.state.error_reports()
    totals = standin.state.accepted_totals()
    lasts = standin.state.last_values()
    billed = {org.customer_id: org for org in orgs if org.customer_id}
    assert {event.customer for event in events} <= set(billed)
    for customer, org in billed.items():
        expected = org.readings_between(NOW - timedelta(days=60), closed_through)
        assert totals.get((customer, "temperature_readings"), Decimal(0)) == expected
        assert lasts[(customer, "active_sensors")] == org.active_sensors_at(closed_through)
    for event in events:
        if event.event_name == "active_sensors":
            close = datetime.fromtimestamp(event.timestamp + 1, UTC)
            assert event.value is not None
            assert event.customer is not None
            assert Decimal(event.value) == billed[event.customer].active_sensors_at(close)


async def test_a_month_of_usage_reaches_stripe_exactly_once(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    orgs = await month_of_usage(sessions)
    worker = make_worker()
    await worker.start()
    await drain(worker, sessions)

    assert_stripe_has_exactly_the_usage(orgs, standin)
    counts = await ledger_counts(sessions)
    assert set(counts) <= {"sent", "skipped"}
    assert counts["sent"] == len(standin.state.accepted_events())
    assert {event.via for event in standin.state.accepted_events()} == {"v1"}


async def test_closing_and_running_again_changes_nothing(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    await month_of_usage(sessions, organizations=4)
    worker = make_worker()
    await worker.start()
    await drain(worker, sessions)
    accepted = len(standin.state.accepted_events())
    async with sessions() as session:
        before = (await session.execute(text("SELECT * FROM meter_reports ORDER BY id"))).all()

    again = make_worker()
    await again.start()
    await again.run_close_windows()
    await drain(again, sessions)
    async with sessions() as session:
        after = (await session.execute(text("SELECT * FROM meter_reports ORDER BY id"))).all()
    assert after == before
    assert len(standin.state.accepted_events()) == accepted


async def test_under_twenty_percent_faults_usage_is_still_exact(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    orgs = await month_of_usage(sessions, organizations=6)
    standin.state.set_faults(
        FaultPlan(
            rate_limited=0.05,
            server_error=0.05,
            timeout=0.05,
            dropped_connection=0.05,
            # Half the failures happen after Stripe recorded the event: the lost
            # acknowledgement that double-bills a naive retry.
            recorded_before_server_error=True,
            recorded_before_timeout=True,
            recorded_before_dropped_connection=False,
            timeout_seconds=1.0,
            seed=3,
        )
    )
    worker = make_worker()
    await worker.start()
    await drain(worker, sessions, within=120)

    counters = standin.state.counters_snapshot()
    assert sum(counters.faults_injected.values()) > 20
    # Lost acknowledgements were retried: Stripe answered them from its idempotency layer (same
    # key) or refused the identifier as a duplicate; either way the usage counted once.
    assert counters.idempotent_replays + counters.duplicates_refused > 0
    assert_stripe_has_exactly_the_usage(orgs, standin)
    async with sessions() as session:
        retried = await session.scalar(
            select(MeterReport.identifier).where(MeterReport.attempts > 1).limit(1)
        )
    assert retried is not None


async def test_large_backlog_goes_through_the_v2_stream(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, worker_settings: Settings
) -> None:
    orgs = await month_of_usage(sessions, organizations=6)
    worker = make_worker(worker_settings.model_copy(update={"meter_stream_threshold": 10}))
    await worker.start()
    await drain(worker, sessions)
    assert_stripe_has_exactly_the_usage(orgs, standin)
    assert Counter(event.via for event in standin.state.accepted_events())["v2"] > 100


async def test_other_4xx_fails_the_report_at_once_and_keeps_the_reason(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, worker_settings: Settings
) -> None:
    await generate_usage(
        sessions, organizations=1, start=NOW - timedelta(days=2), end=NOW, readings_per_org=20
    )
    worker = make_worker(
        worker_settings.model_copy(update={"stripe_api_key": SecretStr("sk_test_revoked")})
    )
    await worker.start()
    await drain(worker, sessions, within=30)

    async with sessions() as session:
        failed = list(
            await session.scalars(select(MeterReport).where(MeterReport.status == "failed"))
        )
    assert failed
    assert {row.attempts for row in failed} == {1}
    assert all("AuthenticationError" in (row.last_error or "") for row in failed)
    assert standin.state.accepted_events() == []
    queue = open_queue(worker.settings.redis_url, QueueNames.METER_REPORTING)
    try:
        assert (await queue.getJobCounts("failed"))["failed"] == len(failed)
    finally:
        await queue.close()


async def test_a_job_from_another_producer_gets_a_ledger_row_and_is_reported_once(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, redis_url: str
) -> None:
    org_id = uuid.uuid4()
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO organizations (id, name, stripe_customer_id)"
                " VALUES (:id, 'N', 'cus_n')"
            ),
            {"id": org_id},
        )
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    data = MeterReportJobData(
        organization_id=org_id,
        event_name="temperature_readings",
        value=42,
        timestamp=int(NOW.timestamp()) - 60,
    )
    job_id = await enqueue_meter_report(queue, data, job_id="17", options=FAST_JOB_OPTIONS)
    worker = make_worker()
    await worker.start()
    await drain(worker, sessions)
    for _ in range(50):
        if await queue.getJobState(job_id) == "completed":
            break
        await asyncio.sleep(0.1)
    await queue.close()

    async with sessions() as session:
        row = await session.scalar(select(MeterReport).where(MeterReport.source == "job"))
    assert row is not None
    assert row.identifier.startswith("job.17.")
    assert row.status == "sent"
    assert row.value == 42
    events = standin.state.accepted_events()
    assert [(e.customer, e.event_name, e.value, e.identifier) for e in events] == [
        ("cus_n", "temperature_readings", "42", row.identifier)
    ]


async def test_windows_closed_at_start_are_enqueued_by_the_same_close(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, redis_url: str
) -> None:
    await month_of_usage(sessions, organizations=2)
    worker = make_worker()
    await worker.start()  # one close, no drain loop: its sweep alone must enqueue the rows
    pending = (await ledger_counts(sessions)).get("pending", 0)
    for _ in range(100):
        if not (await ledger_counts(sessions)).get("pending", 0):
            break
        await asyncio.sleep(0.1)
    assert (await ledger_counts(sessions)).get("pending", 0) == 0, f"{pending} rows waited"


async def test_a_stream_failing_during_a_backlog_leaves_the_rest_to_jobs(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, worker_settings: Settings
) -> None:
    orgs = await month_of_usage(sessions, organizations=4)
    # Stripe fails every call while the close streams the backlog, then recovers.
    standin.state.set_faults(FaultPlan(server_error=1.0))
    worker = make_worker(worker_settings.model_copy(update={"meter_stream_threshold": 10}))
    await worker.start()
    assert standin.state.accepted_events() == []
    assert (await ledger_counts(sessions))["pending"] > 10  # left to jobs and the sweep
    standin.state.set_faults(FaultPlan())
    await drain(worker, sessions)

    assert standin.state.counters_snapshot().faults_injected.get("server_error", 0) > 0
    assert_stripe_has_exactly_the_usage(orgs, standin)


async def test_a_500_that_stripe_keeps_under_the_key_is_retried_under_a_new_one(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    """Stripe keeps a 500 under its idempotency key and answers the same key with it for 24 h,
    even when the event was recorded. A retry under the old key could only get that 500: the
    report would wait a day, then be sent when Stripe may no longer know the identifier."""
    orgs = await month_of_usage(sessions, organizations=2)
    standin.state.set_faults(FaultPlan(server_error=1.0, recorded_before_server_error=True))
    worker = make_worker()
    await worker.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not standin.state.accepted_events():
        assert loop.time() < deadline, "no call reached the stand-in"
        await asyncio.sleep(0.05)
    standin.state.set_faults(FaultPlan())
    await drain(worker, sessions)

    assert_stripe_has_exactly_the_usage(orgs, standin)
    # Recorded behind the 500, then refused as a duplicate under the new key: sent once.
    assert standin.state.counters_snapshot().duplicates_refused > 0
    async with sessions() as session:
        moved_on = await session.scalar(
            select(MeterReport.identifier).where(MeterReport.key_generation > 0).limit(1)
        )
    assert moved_on is not None


class FailingFirstStream:
    """A stream whose first request fails while the others take a while to be answered."""

    def __init__(self) -> None:
        self.calls = 0
        self.in_flight = 0

    async def send(self, events: list[dict[str, object]]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise stripe.APIConnectionError("connection reset")  # type: ignore[no-untyped-call]
        self.in_flight += 1
        try:
            await asyncio.sleep(0.2)
        finally:
            self.in_flight -= 1


async def test_a_failed_stream_batch_stops_the_other_senders_before_the_stream_returns(
    sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jobs take over the backlog when the stream raises: a sender still streaming after
    that is work nobody waits for (stop() does not, nor the job's log and result)."""
    await month_of_usage(sessions, organizations=4)
    async with unit_of_work(sessions) as session:
        await close_windows(session, ClosePolicy(window=DAY, grace=timedelta(0)), NOW)
    monkeypatch.setattr(stream_module, "STREAM_BATCH", 5)
    stream = FailingFirstStream()

    with pytest.raises(StripeUnavailableError):
        await stream_backlog(
            sessions, cast(MeterEventStream, stream), clock=lambda: NOW, limit=10_000
        )
    calls_at_return = stream.calls
    assert stream.in_flight == 0
    await asyncio.sleep(0.5)
    assert stream.calls == calls_at_return, "senders kept streaming after the stream returned"
    async with sessions() as session:
        sent = await session.scalar(
            select(func.count()).select_from(MeterReport).where(MeterReport.status == "sent")
        )
    # The batches answered alongside the failed one are recorded; nothing after them.
    assert sent == 5 * (calls_at_return - 1)


async def test_a_stop_during_the_start_up_stream_ends_it_after_the_batches_in_flight(
    sessions: SessionFactory,
    standin: RunningStandin,
    worker_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After an outage the start-up close streams the backlog: a SIGTERM then must not wait
    for all of it (nor start taking jobs), and what Stripe accepted is recorded as sent."""
    await month_of_usage(sessions, organizations=6)
    monkeypatch.setattr(stream_module, "STREAM_BATCH", 5)
    send = MeterEventStream.send

    async def slow_send(self: MeterEventStream, events: list[dict[str, object]]) -> None:
        await asyncio.sleep(0.2)
        await send(self, events)

    monkeypatch.setattr(MeterEventStream, "send", slow_send)
    stop = asyncio.Event()
    settings = worker_settings.model_copy(update={"meter_stream_threshold": 10})
    running = asyncio.create_task(run_worker(settings, stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not standin.state.accepted_events():
        assert loop.time() < deadline, "the stream did not start"
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(running, 10)

    async with sessions() as session:
        sent = set(
            await session.scalars(
                select(MeterReport.identifier).where(MeterReport.status == "sent")
            )
        )
    assert {event.identifier for event in standin.state.accepted_events()} == sent
    assert (await ledger_counts(sessions)).get("pending", 0) > 0  # it stopped, not drained
