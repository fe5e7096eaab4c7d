"""Sending a row again more than a day after it could first have been sent.

Stripe refuses a second event with an identifier for at least 24 h, and after that accepts it
again (STRIPE.md). A send whose answer was lost, whose row then stays pending for longer (Stripe
or the worker down), is checked against Stripe's hourly meter event summaries before it goes
out again: marked sent when the usage is there, sent when it is not, left to a person when the
hour's value does not tell.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import text

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import FaultPlan, RunningStandin
from sensor_billing.jobs.worker import MeteringWorker
from sensor_billing.metering.repository import HourNeighbour
from sensor_billing.metering.stale_resend import Decision, judge
from sensor_billing.settings import Settings
from tests.metering.conftest import DAY, MovingClock, drain, ledger_counts, make_client
from tests.support.usage_data import GeneratedOrganization, generate_usage

NOW = datetime.now(UTC)
LATER = timedelta(hours=25)


async def two_days_of_usage(sessions: SessionFactory) -> list[GeneratedOrganization]:
    return await generate_usage(
        sessions,
        organizations=2,
        start=NOW - 2 * DAY,
        end=NOW - DAY,
        readings_per_org=40,
        seed=21,
    )


async def until_every_job_failed(worker: MeteringWorker, jobs: int, within: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while int((await worker.queue.getJobCounts("failed"))["failed"]) < jobs:
        assert loop.time() < deadline, "the jobs did not use up their attempts"
        await asyncio.sleep(0.2)


async def test_a_send_whose_answer_was_lost_is_not_billed_again_more_than_a_day_later(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    await two_days_of_usage(sessions)
    # Stripe records every event, and every answer is lost (the client gives up first).
    standin.state.set_faults(
        FaultPlan(timeout=1.0, recorded_before_timeout=True, timeout_seconds=1.0)
    )
    clock = MovingClock(standin)
    worker = make_worker(clock=clock)
    await worker.start()
    pending = (await ledger_counts(sessions))["pending"]
    await until_every_job_failed(worker, pending)
    accepted = standin.state.identifier_accept_counts()
    assert len(accepted) == pending
    assert set(accepted.values()) == {1}

    # Stripe answers again, more than a day later: it no longer knows the identifiers.
    clock.advance(LATER)
    standin.state.set_faults(FaultPlan())
    await drain(worker, sessions)

    counts = standin.state.identifier_accept_counts()
    assert {identifier: counts[identifier] for identifier in accepted} == accepted
    assert set(await ledger_counts(sessions)) <= {"sent", "skipped"}


def stale_checks(decision: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "sensor_billing_stale_resend_checks_total", {"decision": decision}
        )
        or 0.0
    )


async def test_a_row_stripe_never_recorded_is_sent_once_more_than_a_day_later_and_not_streamed(
    sessions: SessionFactory,
    standin: RunningStandin,
    make_worker: Any,
    worker_settings: Settings,
) -> None:
    await two_days_of_usage(sessions)
    standin.state.set_faults(FaultPlan(server_error=1.0))  # refused before recording
    clock = MovingClock(standin)
    # Any backlog goes through the stream, which must leave rows this old to their jobs.
    worker = make_worker(
        worker_settings.model_copy(update={"meter_stream_threshold": 1}), clock=clock
    )
    await worker.start()
    pending = (await ledger_counts(sessions))["pending"]
    await until_every_job_failed(worker, pending)
    assert standin.state.accepted_events() == []

    clock.advance(LATER)
    standin.state.set_faults(FaultPlan())
    sent_before = stale_checks("send")
    closed = await worker.run_close_windows()
    await drain(worker, sessions)

    assert closed["streamed"] == 0
    assert stale_checks("send") - sent_before >= pending
    events = standin.state.accepted_events()
    assert set(standin.state.identifier_accept_counts().values()) == {1}
    assert {event.via for event in events} == {"v1"}
    assert set(await ledger_counts(sessions)) <= {"sent", "skipped"}


async def test_an_hour_holding_more_than_the_ledger_explains_is_left_to_a_person_unsent(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> None:
    [org, *_] = await two_days_of_usage(sessions)
    standin.state.set_faults(
        FaultPlan(timeout=1.0, recorded_before_timeout=True, timeout_seconds=1.0)
    )
    clock = MovingClock(standin)
    worker = make_worker(clock=clock)
    await worker.start()
    await until_every_job_failed(worker, (await ledger_counts(sessions))["pending"])
    async with sessions() as session:
        identifier, window_end = (
            await session.execute(
                text(
                    "SELECT identifier, window_end FROM meter_reports WHERE status = 'pending'"
                    " AND event_name = 'temperature_readings' AND organization_id = :org"
                    " ORDER BY window_start LIMIT 1"
                ),
                {"org": org.id},
            )
        ).one()
    standin.state.set_faults(FaultPlan())
    # Another producer's event in the same hour: Stripe's hour is more than the ledger's.
    await make_client(standin).v1.billing.meter_events.create_async(
        {
            "event_name": "temperature_readings",
            "identifier": "another-producer-1",
            "payload": {"stripe_customer_id": str(org.customer_id), "value": "7"},
            "timestamp": int(window_end.timestamp()) - 30,
        }
    )
    clock.advance(LATER)
    await worker.run_close_windows()
    await drain(worker, sessions)

    async with sessions() as session:
        status, error = (
            await session.execute(
                text("SELECT status, last_error FROM meter_reports WHERE identifier = :i"),
                {"i": identifier},
            )
        ).one()
    assert status == "failed"
    assert "cannot be told" in error
    assert "holds" in error
    # Nothing went out twice: the rest was marked sent from the summaries, and only the
    # windows closed since were sent.
    assert set(standin.state.identifier_accept_counts().values()) == {1}


HOUR_START = datetime(2026, 11, 30, 23, tzinfo=UTC)
AT = HOUR_START + timedelta(days=2)


def neighbour(status: str, value: int, sent_ago: timedelta | None = None) -> HourNeighbour:
    return HourNeighbour(status, value, None if sent_ago is None else AT - sent_ago, None)


def test_a_sum_hour_holding_only_the_other_rows_means_send() -> None:
    others = [neighbour("sent", 5, timedelta(hours=30))]
    assert judge("sum", Decimal(5), 3, others, hour=HOUR_START, now=AT).decision is Decision.SEND


def test_a_sum_hour_holding_the_other_rows_and_this_one_means_counted() -> None:
    others = [neighbour("sent", 5, timedelta(hours=30)), neighbour("skipped", 9)]
    judgement = judge("sum", Decimal(8), 3, others, hour=HOUR_START, now=AT)
    assert judgement.decision is Decision.COUNTED


def test_a_sum_hour_with_a_row_still_pending_beside_it_is_counted_only_if_both_are_there() -> None:
    others = [neighbour("pending", 4)]
    assert judge("sum", Decimal(0), 3, others, hour=HOUR_START, now=AT).decision is Decision.SEND
    assert judge("sum", Decimal(7), 3, others, hour=HOUR_START, now=AT).decision is Decision.COUNTED
    # 3 or 4 alone: either row could be the one Stripe has.
    for value in (3, 4):
        judgement = judge("sum", Decimal(value), 3, others, hour=HOUR_START, now=AT)
        assert judgement.decision is Decision.PERSON


def test_a_row_sent_within_the_hour_is_not_yet_known_to_be_in_stripes_sum() -> None:
    others = [neighbour("sent", 5, timedelta(minutes=10))]
    judgement = judge("sum", Decimal(5), 3, others, hour=HOUR_START, now=AT)
    assert judgement.decision is Decision.PERSON


def test_a_last_hour_at_this_value_means_counted_and_any_other_value_means_send() -> None:
    assert judge("last", Decimal(4), 4, [], hour=HOUR_START, now=AT).decision is Decision.COUNTED
    assert judge("last", Decimal(0), 4, [], hour=HOUR_START, now=AT).decision is Decision.SEND
    assert judge("last", Decimal(5), 4, [], hour=HOUR_START, now=AT).decision is Decision.SEND
