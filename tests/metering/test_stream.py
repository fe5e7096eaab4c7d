"""The v2 meter event stream against the Stripe stand-in over HTTP, with time that moves."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import MeterReport
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.metering import stream as stream_module
from sensor_billing.metering.send_ledger import SendLedger
from sensor_billing.metering.service import ClosePolicy, close_windows
from sensor_billing.metering.stream import MeterEventStream, stream_backlog
from sensor_billing.metering.windows import STRIPE_TIMESTAMP_LIMIT
from sensor_billing.settings import Settings
from tests.metering.conftest import DAY, MovingClock, ledger_counts, make_client
from tests.metering.test_send_ledger import pending_rows
from tests.support.usage_data import generate_usage


async def seed_rows_near_the_limit(
    sessions: SessionFactory, now: datetime, rows: int, first_inside: timedelta
) -> None:
    """Pending window rows whose event timestamps lie `first_inside` and more inside Stripe's
    35-day limit, one minute apart; the ones nearest the limit are the newest rows, so the
    stream (oldest rows first) reaches them last."""
    organization = uuid.uuid4()
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO organizations (id, name, stripe_customer_id)"
                " VALUES (:id, 'Old backlog', 'cus_old')"
            ),
            {"id": organization},
        )
        for index in range(rows):
            timestamp = now - STRIPE_TIMESTAMP_LIMIT + first_inside + timedelta(minutes=index)
            end = timestamp + timedelta(seconds=1)
            await session.execute(
                text(
                    "INSERT INTO meter_reports (organization_id, event_name, window_start,"
                    " window_end, value, stripe_customer_id, identifier, created_at)"
                    " VALUES (:org, 'temperature_readings', :start, :end, 1, 'cus_old',"
                    " :identifier, :created)"
                ),
                {
                    "org": organization,
                    "start": end - timedelta(minutes=1),
                    "end": end,
                    "identifier": f"sb.old.{index}",
                    "created": now - timedelta(hours=2) - timedelta(seconds=index),
                },
            )


async def test_rows_that_pass_stripes_limit_during_a_long_stream_are_not_marked_sent(
    sessions: SessionFactory,
    standin: RunningStandin,
    make_worker: Any,
    worker_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backlog streamed for two hours: a row whose timestamp passed Stripe's 35-day limit
    meanwhile would be accepted with `{}` and dropped by Stripe's asynchronous validation,
    while the ledger said `sent`. Each batch is checked against the time it is sent at; a
    row that missed the limit is failed, for a person, by its job."""
    clock = MovingClock(standin)
    await seed_rows_near_the_limit(
        sessions, clock(), rows=60, first_inside=timedelta(hours=1, minutes=1)
    )
    monkeypatch.setattr(stream_module, "STREAM_BATCH", 5)
    send = MeterEventStream.send

    async def slow_send(self: MeterEventStream, events: list[dict[str, object]]) -> None:
        await send(self, events)
        clock.advance(timedelta(minutes=10))

    monkeypatch.setattr(MeterEventStream, "send", slow_send)
    worker = make_worker(
        worker_settings.model_copy(update={"meter_stream_threshold": 10}), clock=clock
    )
    await worker.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while (await ledger_counts(sessions)).get("pending", 0):
        assert loop.time() < deadline, await ledger_counts(sessions)
        await asyncio.sleep(0.2)

    assert [report.code for report in standin.state.error_reports()] == []
    async with sessions() as session:
        rows = list(
            await session.scalars(
                select(MeterReport).where(MeterReport.identifier.startswith("sb.old."))
            )
        )
    sent = {row.identifier for row in rows if row.status == "sent"}
    accepted = {event.identifier for event in standin.state.accepted_events()}
    assert {identifier for identifier in accepted if identifier.startswith("sb.old.")} == sent
    assert len(sent) >= 20, "the stream sent too little to show anything"
    late = [row for row in rows if row.status != "sent"]
    assert late, "no row passed the limit during the stream"
    assert {row.status for row in late} == {"failed"}
    assert all("35-day limit" in (row.last_error or "") for row in late)
    assert max(int(row.window_end.timestamp()) for row in late) < min(
        int(row.window_end.timestamp()) for row in rows if row.status == "sent"
    )


async def test_a_stream_outliving_its_session_token_opens_a_new_one_and_sends_everything_once(
    sessions: SessionFactory, standin: RunningStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stripe's session token lives 15 minutes; a backlog can take longer. The call refused
    with `billing_meter_event_session_expired` is made again under a new session."""
    clock = MovingClock(standin)
    now = clock()
    await generate_usage(
        sessions, organizations=2, start=now - timedelta(days=6), end=now, readings_per_org=40
    )
    async with unit_of_work(sessions) as session:
        await close_windows(session, ClosePolicy(window=DAY, grace=timedelta(0)), now)
    monkeypatch.setattr(stream_module, "STREAM_BATCH", 5)
    send = MeterEventStream.send

    async def slow_send(self: MeterEventStream, events: list[dict[str, object]]) -> None:
        await send(self, events)
        clock.advance(timedelta(minutes=16))

    monkeypatch.setattr(MeterEventStream, "send", slow_send)
    stream = MeterEventStream(make_client(standin), lambda token: make_client(standin, token))

    sent = await stream_backlog(sessions, stream, clock=clock, limit=10_000, senders=1)

    assert sent == (await ledger_counts(sessions))["sent"] > 10
    assert (await ledger_counts(sessions)).get("pending", 0) == 0
    assert len(standin.state.accepted_events()) == sent
    assert set(standin.state.identifier_accept_counts().values()) == {1}
    with standin.state.lock:
        assert len(standin.state.sessions_by_token) == -(-sent // 5)  # one per call


async def test_rows_beyond_stripes_limit_at_the_head_of_the_backlog_do_not_stop_the_stream(
    sessions: SessionFactory, standin: RunningStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a long outage the oldest pending rows are the ones past Stripe's 35-day limit
    (their jobs fail them for a person). The stream takes the oldest rows first: it must pass
    over those, not stop at them and leave the whole backlog to one-event jobs."""
    now = datetime.now(UTC).replace(microsecond=0)
    organization = uuid.uuid4()
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO organizations (id, name, stripe_customer_id)"
                " VALUES (:id, 'Long outage', 'cus_outage')"
            ),
            {"id": organization},
        )
        for index in range(20):
            too_old = index < 10
            end = now - (STRIPE_TIMESTAMP_LIMIT + DAY if too_old else DAY) + timedelta(hours=index)
            await session.execute(
                text(
                    "INSERT INTO meter_reports (organization_id, event_name, window_start,"
                    " window_end, value, stripe_customer_id, identifier, created_at)"
                    " VALUES (:org, 'temperature_readings', :start, :end, 1, 'cus_outage',"
                    " :identifier, :created)"
                ),
                {
                    "org": organization,
                    "start": end - timedelta(hours=1),
                    "end": end,
                    "identifier": f"sb.outage.{index}",
                    # The rows past the limit were closed first: the head of the backlog.
                    "created": now - timedelta(hours=3) + timedelta(seconds=index),
                },
            )
    monkeypatch.setattr(stream_module, "STREAM_BATCH", 5)
    stream = MeterEventStream(make_client(standin), lambda token: make_client(standin, token))

    sent = await stream_backlog(sessions, stream, clock=lambda: now, limit=10_000, senders=1)

    assert sent == 10
    assert {event.identifier for event in standin.state.accepted_events()} == {
        f"sb.outage.{index}" for index in range(10, 20)
    }
    assert await ledger_counts(sessions) == {"pending": 10, "sent": 10}


class RecordingStream:
    """A stream that accepts every batch and remembers the identifiers it was given."""

    def __init__(self) -> None:
        self.identifiers: list[str] = []

    async def send(self, events: list[dict[str, object]]) -> None:
        self.identifiers.extend(str(event["identifier"]) for event in events)


async def test_a_row_whose_customer_and_meter_a_job_is_sending_is_left_to_that_job(
    sessions: SessionFactory, engine: AsyncEngine
) -> None:
    """A job holds its row's (customer, meter) pair while it calls Stripe, not the row: the
    stream leaves the pair's rows alone until the job is done, and sends the others."""
    busy = await pending_rows(sessions, "cus_busy", windows=2)
    idle = await pending_rows(sessions, "cus_idle", windows=2)
    ledger = SendLedger(engine, batch_size=1)
    stream = RecordingStream()
    try:
        async with ledger.claim(busy[0]) as row:
            assert row is not None
            sent = await stream_backlog(
                sessions, cast(MeterEventStream, stream), clock=lambda: datetime.now(UTC), limit=10
            )
            assert sorted(stream.identifiers) == sorted(idle)
            assert sent == len(idle)
    finally:
        await ledger.close()
    await stream_backlog(
        sessions, cast(MeterEventStream, stream), clock=lambda: datetime.now(UTC), limit=10
    )
    assert sorted(stream.identifiers) == sorted(idle + busy)
    assert (await ledger_counts(sessions)) == {"sent": 4}
