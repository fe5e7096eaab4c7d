"""`GET /metrics` moves as webhooks are delivered and usage is reported, and shows the backlog."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.devtools.stripe_standin import FaultPlan, RunningStandin
from sensor_billing.errors import StripeUnavailableError
from sensor_billing.jobs import MeterReportJobData, QueueNames
from sensor_billing.jobs.connection import open_queue
from sensor_billing.jobs.worker import run_worker
from sensor_billing.metering import stream as stream_module
from sensor_billing.metering.service import ClosePolicy, close_windows
from sensor_billing.metering.stream import MeterEventStream, stream_backlog
from sensor_billing.settings import Settings
from sensor_billing.webhooks.handlers import HANDLERS
from tests.metering.conftest import DAY, drain, ledger_counts, make_client
from tests.observability.conftest import SECRET, Samples, growth, scrape, value
from tests.support.app import running_app
from tests.support.net import free_port
from tests.support.stripe_events import deliver, make_event
from tests.support.usage_data import generate_usage

DELIVERIES = "sensor_billing_webhook_deliveries_total"
REPORTS = "sensor_billing_meter_reports_total"


def customer_event() -> dict[str, Any]:
    return make_event(
        "customer.updated", {"id": "cus_metrics", "object": "customer"}, created=int(time.time())
    )


async def test_each_webhook_delivery_counts_once_under_its_outcome_and_type(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)
    event = customer_event()
    assert (await deliver(client, event, secret=SECRET)).json()["outcome"] == "processed"
    assert (await deliver(client, event, secret=SECRET)).json()["outcome"] == "duplicate"
    assert (await deliver(client, event, secret="whsec_wrong")).status_code == 400
    after = await scrape(client)

    assert growth(before, after, DELIVERIES, outcome="processed", type="customer.updated") == 1
    assert growth(before, after, DELIVERIES, outcome="duplicate", type="customer.updated") == 1
    assert growth(before, after, DELIVERIES, outcome="rejected", type="-") == 1
    durations = [
        growth(before, after, "sensor_billing_webhook_duration_seconds_count", outcome=outcome)
        for outcome in ("processed", "duplicate", "rejected")
    ]
    assert durations == [1, 1, 1]


async def test_a_delivery_whose_handler_fails_counts_as_failed(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_handler(*_: Any) -> Any:
        raise RuntimeError("the handler broke")

    monkeypatch.setitem(HANDLERS, "customer.updated", broken_handler)
    before = await scrape(client)
    assert (await deliver(client, customer_event(), secret=SECRET)).status_code == 500
    after = await scrape(client)

    assert growth(before, after, DELIVERIES, outcome="failed", type="customer.updated") == 1


async def test_reported_usage_counts_as_sent_and_times_each_stripe_call(
    client: httpx.AsyncClient, sessions: SessionFactory, make_worker: Any
) -> None:
    now = datetime.now(UTC)
    await generate_usage(
        sessions, organizations=2, start=now - timedelta(days=2), end=now, readings_per_org=20
    )
    before = await scrape(client)
    worker = make_worker()
    await worker.start()
    await drain(worker, sessions)
    after = await scrape(client)

    sent = (await ledger_counts(sessions))["sent"]
    assert sent > 0
    assert growth(before, after, REPORTS, outcome="sent") == sent
    calls = growth(before, after, "sensor_billing_stripe_request_duration_seconds_count")
    assert calls == sent


async def test_stripe_errors_are_counted_by_status_and_the_reports_as_retried(
    client: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    make_worker: Any,
) -> None:
    now = datetime.now(UTC)
    # Three days of readings: the worker closes day windows, and with one day of 5 readings the
    # closable part (before today's midnight) held none late in the UTC day: nothing was sent.
    await generate_usage(
        sessions, organizations=1, start=now - timedelta(days=3), end=now, readings_per_org=20
    )
    standin.state.set_faults(FaultPlan(server_error=1.0))
    before = await scrape(client)
    worker = make_worker()
    await worker.start()
    for _ in range(100):
        after = await scrape(client)
        if growth(before, after, REPORTS, outcome="retry"):
            break
        await asyncio.sleep(0.05)
    standin.state.set_faults(FaultPlan())
    await drain(worker, sessions)

    assert growth(before, after, "sensor_billing_stripe_errors_total", status="500") >= 1
    assert growth(before, after, REPORTS, outcome="retry") >= 1


async def closed_backlog(sessions: SessionFactory, now: datetime) -> None:
    await generate_usage(
        sessions, organizations=3, start=now - timedelta(days=10), end=now, readings_per_org=60
    )
    async with unit_of_work(sessions) as session:
        await close_windows(session, ClosePolicy(window=DAY, grace=timedelta(0)), now)


def stripe_stream(standin: RunningStandin) -> MeterEventStream:
    return MeterEventStream(make_client(standin), lambda token: make_client(standin, token))


async def test_each_stream_request_is_timed_as_a_stripe_call(
    client: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime.now(UTC)
    await closed_backlog(sessions, now)
    monkeypatch.setattr(stream_module, "STREAM_BATCH", 5)
    before = await scrape(client)
    sent = await stream_backlog(sessions, stripe_stream(standin), clock=lambda: now, limit=10_000)
    after = await scrape(client)

    events = standin.state.accepted_events()
    assert sent == len(events) > 10
    requests = len({event.request_id for event in events})
    calls = growth(before, after, "sensor_billing_stripe_request_duration_seconds_count")
    assert calls == requests


async def test_a_failed_stream_request_is_counted_by_its_status(
    client: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
) -> None:
    now = datetime.now(UTC)
    await closed_backlog(sessions, now)
    standin.state.set_faults(FaultPlan(server_error=1.0))
    before = await scrape(client)
    with pytest.raises(StripeUnavailableError):
        await stream_backlog(sessions, stripe_stream(standin), clock=lambda: now, limit=10_000)
    after = await scrape(client)

    failed = standin.state.counters_snapshot().faults_injected["server_error"]
    assert failed >= 1
    assert growth(before, after, "sensor_billing_stripe_errors_total", status="500") == failed
    calls = growth(before, after, "sensor_billing_stripe_request_duration_seconds_count")
    assert calls == failed


async def seed_backlog(
    sessions: SessionFactory, *, pending: int, oldest_age: timedelta, closed_through: datetime
) -> None:
    organization = uuid.uuid4()
    now = datetime.now(UTC)
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO organizations (id, name, stripe_customer_id)"
                " VALUES (:id, 'Backlog', 'cus_backlog')"
            ),
            {"id": organization},
        )
        await session.execute(
            text(
                "INSERT INTO metering_cursors (organization_id, closed_through)"
                " VALUES (:id, :closed)"
            ),
            {"id": organization, "closed": closed_through},
        )
        for index in range(pending + 1):
            start = closed_through - timedelta(hours=index + 1)
            await session.execute(
                text(
                    "INSERT INTO meter_reports (organization_id, event_name, window_start,"
                    " window_end, value, stripe_customer_id, identifier, status, created_at)"
                    " VALUES (:org, 'temperature_readings', :start, :end, 1, 'cus_backlog',"
                    " :identifier, :status, :created)"
                ),
                {
                    "org": organization,
                    "start": start,
                    "end": start + timedelta(hours=1),
                    "identifier": f"sb.backlog.{index}",
                    # One row already sent, and older than every pending one: not counted.
                    "status": "pending" if index < pending else "sent",
                    "created": now - oldest_age * (index + 1) / pending,
                },
            )


async def test_the_backlog_gauges_show_pending_rows_their_age_and_the_last_closed_window(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    closed_through = datetime(2026, 11, 27, 12, tzinfo=UTC)
    await seed_backlog(
        sessions, pending=3, oldest_age=timedelta(minutes=10), closed_through=closed_through
    )
    samples = await scrape(client)

    assert value(samples, "sensor_billing_ledger_pending_reports") == 3
    age = value(samples, "sensor_billing_ledger_oldest_pending_age_seconds")
    assert 600 <= age < 660
    closed = value(samples, "sensor_billing_last_closed_window_timestamp_seconds")
    assert closed == closed_through.timestamp()
    assert value(samples, "sensor_billing_backlog_source_up", source="postgresql") == 1


async def test_with_nothing_pending_the_oldest_age_is_zero_and_no_window_is_shown(
    client: httpx.AsyncClient,
) -> None:
    samples = await scrape(client)

    assert value(samples, "sensor_billing_ledger_pending_reports") == 0
    assert value(samples, "sensor_billing_ledger_oldest_pending_age_seconds") == 0
    assert not any(
        name == "sensor_billing_last_closed_window_timestamp_seconds" for name, _ in samples
    )


async def test_the_queue_depth_gauge_shows_waiting_and_delayed_meter_report_jobs(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    queue = open_queue(settings.redis_url, QueueNames.METER_REPORTING)
    data = MeterReportJobData(
        organization_id=uuid.uuid4(), event_name="temperature_readings", value=1
    ).to_wire()
    try:
        await queue.add("meter:report", data, {"jobId": "waiting-1"})
        await queue.add("meter:report", data, {"jobId": "waiting-2"})
        await queue.add("meter:report", data, {"jobId": "later", "delay": 60_000})
    finally:
        await queue.close()
    samples = await scrape(client)

    depth = {
        state: value(samples, "sensor_billing_meter_queue_jobs", state=state)
        for state in ("waiting", "active", "delayed", "failed")
    }
    assert depth == {"waiting": 2, "active": 0, "delayed": 1, "failed": 0}
    assert value(samples, "sensor_billing_backlog_source_up", source="redis") == 1


async def test_when_redis_does_not_answer_its_gauges_are_left_out_and_marked_down(
    database_url: str, sessions: SessionFactory
) -> None:
    settings = Settings(database_url=database_url, redis_url="redis://127.0.0.1:1/0")
    async with running_app(settings) as (_, client):
        samples: Samples = await scrape(client)

    assert value(samples, "sensor_billing_backlog_source_up", source="redis") == 0
    assert value(samples, "sensor_billing_backlog_source_up", source="postgresql") == 1
    assert not any(name == "sensor_billing_meter_queue_jobs" for name, _ in samples)
    assert ("sensor_billing_ledger_pending_reports", frozenset()) in samples


async def test_the_worker_serves_its_metrics_on_worker_metrics_port(
    worker_settings: Settings, sessions: SessionFactory
) -> None:
    port = free_port()
    settings = worker_settings.model_copy(update={"worker_metrics_port": port})
    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(settings, stop))
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    response = await http.get(f"http://127.0.0.1:{port}/metrics")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the worker's metrics port never answered")
    finally:
        stop.set()
        await running

    assert response.status_code == 200
    assert "sensor_billing_stripe_request_duration_seconds_count" in response.text
    with pytest.raises(httpx.ConnectError):  # stopped with the worker
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/metrics")
