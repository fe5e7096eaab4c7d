"""The worker's group commit: claims and outcomes of many jobs in shared statements, against
real PostgreSQL, Redis and the Stripe stand-in."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import ReportStatus
from sensor_billing.devtools.stripe_standin import RunningStandin, StandinConfig
from sensor_billing.jobs import QueueNames
from sensor_billing.jobs.connection import open_queue
from sensor_billing.jobs.worker import WORKER_APPLICATION_NAME
from sensor_billing.metering.send_ledger import SendLedger
from sensor_billing.metering.send_repository import ReportForSend, ReportOutcome
from tests.metering.conftest import drain, ledger_counts
from tests.metering.test_reporting import assert_stripe_has_exactly_the_usage, month_of_usage
from tests.metering.test_worker_process import wait_for
from tests.support.databases import advisory_locks_held

WINDOW = timedelta(hours=1)

# The worker's ledger statement waiting for a table lock (the test's), as pg_stat_activity
# shows it.
WAITING_GROUP_COMMITS = text("""
SELECT pid FROM pg_stat_activity
 WHERE application_name = :name AND datname = current_database()
   AND wait_event_type = 'Lock' AND query LIKE '%UPDATE meter_reports AS r%'
""")


async def waiting_group_commits(sessions: SessionFactory) -> list[int]:
    """The backend pids of worker connections whose ledger statement waits for a lock."""
    async with sessions() as session:
        return list(await session.scalars(WAITING_GROUP_COMMITS, {"name": WORKER_APPLICATION_NAME}))


async def pending_rows(sessions: SessionFactory, customer: str, windows: int) -> list[str]:
    """`windows` pending `active_sensors` rows of one organization billed to `customer`: one
    (customer, meter) pair. Returns their identifiers, oldest window first."""
    organization = uuid.uuid4()
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - windows * WINDOW
    identifiers = [f"sb.{organization}.active_sensors.{index}" for index in range(windows)]
    async with unit_of_work(sessions) as session:
        await session.execute(
            text("INSERT INTO organizations (id, name, stripe_customer_id) VALUES (:id, 'T', :c)"),
            {"id": organization, "c": customer},
        )
        for index, identifier in enumerate(identifiers):
            await session.execute(
                text(
                    "INSERT INTO meter_reports (organization_id, event_name, window_start,"
                    " window_end, value, stripe_customer_id, identifier)"
                    " VALUES (:org, 'active_sensors', :start, :end, 3, :c, :identifier)"
                ),
                {
                    "org": organization,
                    "start": first + index * WINDOW,
                    "end": first + (index + 1) * WINDOW,
                    "c": customer,
                    "identifier": identifier,
                },
            )
    return identifiers


@pytest.fixture
async def ledgers(engine: AsyncEngine) -> AsyncIterator[Any]:
    """`ledgers()`: a SendLedger of its own (its own session, as another worker has)."""
    made: list[SendLedger] = []

    def make() -> SendLedger:
        ledger = SendLedger(engine, batch_size=4)
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        await ledger.close()


class Holder:
    """A job's claim of one row, entered in a task of its own and left when told."""

    def __init__(self, ledger: SendLedger, identifier: str, *, record: bool = False) -> None:
        self.entered = asyncio.Event()
        self.leave = asyncio.Event()
        self.row: ReportForSend | None = None
        self.task = asyncio.create_task(self._hold(ledger, identifier, record))

    async def _hold(self, ledger: SendLedger, identifier: str, record: bool) -> None:
        async with ledger.claim(identifier) as row:
            self.row = row
            self.entered.set()
            await self.leave.wait()
            if record and row is not None and row.status == ReportStatus.PENDING:
                sent = ReportOutcome(row.id, ReportStatus.SENT, datetime.now(UTC), attempted=True)
                await ledger.record(sent)

    async def release(self) -> None:
        self.leave.set()
        await asyncio.wait_for(self.task, 10)


async def entered(holder: Holder) -> ReportForSend | None:
    await asyncio.wait_for(holder.entered.wait(), 10)
    return holder.row


async def test_claims_of_one_customer_and_meter_in_one_worker_take_turns(
    sessions: SessionFactory, ledgers: Any
) -> None:
    first_id, second_id = await pending_rows(sessions, "cus_turns", windows=2)
    ledger = ledgers()
    first = Holder(ledger, first_id)
    await entered(first)
    second = Holder(ledger, second_id)
    await asyncio.sleep(0.3)
    # Stripe allows one call at a time per customer and meter: the second job waits.
    assert not second.entered.is_set()
    await first.release()
    assert (row := await entered(second)) is not None
    assert row.identifier == second_id
    await second.release()


async def test_a_pair_another_worker_holds_is_claimed_once_that_worker_releases_it(
    sessions: SessionFactory, ledgers: Any
) -> None:
    first_id, second_id = await pending_rows(sessions, "cus_shared", windows=2)
    first = Holder(ledgers(), first_id)
    await entered(first)
    second = Holder(ledgers(), second_id)
    await asyncio.sleep(0.5)
    assert not second.entered.is_set(), "two workers held one customer and meter at once"
    assert await advisory_locks_held(sessions) == 1  # the pair's, held by the first
    await first.release()
    assert (row := await entered(second)) is not None
    assert row.identifier == second_id
    await second.release()
    # Released with the ledger's next statement, a moment after the block ends.
    for _ in range(100):
        if await advisory_locks_held(sessions) == 0:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the pair lock outlived the claim")


async def test_a_second_claim_of_a_row_being_sent_reads_it_sent_once_the_first_recorded_it(
    sessions: SessionFactory, ledgers: Any
) -> None:
    """Two jobs for one row (another producer's job and the sweep's, say): the second reads
    the row only after the first's outcome is committed, and has nothing to send."""
    [identifier] = await pending_rows(sessions, "cus_twice", windows=1)
    ledger = ledgers()
    first = Holder(ledger, identifier, record=True)
    assert (row := await entered(first)) is not None
    assert row.status == ReportStatus.PENDING
    second = Holder(ledger, identifier)
    await asyncio.sleep(0.3)
    assert not second.entered.is_set()
    await first.release()
    assert (reread := await entered(second)) is not None
    assert reread.status == ReportStatus.SENT
    await second.release()


async def test_a_group_commit_that_fails_leaves_its_rows_pending_and_every_job_of_it_is_retried(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, redis_url: str
) -> None:
    """The statement that records the outcomes of jobs whose events Stripe accepted fails
    (here its connection is ended while it waits for a lock the test holds): none of its
    outcomes is written, every one of its jobs is retried (once the lock is gone), Stripe
    answers the retries from the same idempotency key, and each window is billed once."""
    orgs = await month_of_usage(sessions, organizations=4)
    # Calls slow enough that the lock below is taken while the first ones are in flight.
    standin.state.configure(StandinConfig(processing_latency_seconds=0.3))
    worker = make_worker()
    await worker.start()
    blocker = sessions()
    await blocker.execute(text("LOCK TABLE meter_reports IN SHARE MODE"))  # outcomes wait
    try:
        waiting: list[int] = []

        async def group_commit_waiting() -> bool:
            waiting[:] = await waiting_group_commits(sessions)
            return bool(waiting) and bool(standin.state.accepted_events())

        await wait_for(group_commit_waiting, 30, "the worker's outcomes to wait for the lock")
        async with sessions() as session:
            pending = set(
                await session.scalars(
                    text("SELECT identifier FROM meter_reports WHERE status = 'pending'")
                )
            )
        caught = {event.identifier for event in standin.state.accepted_events()} & pending
        assert caught, "no accepted event was waiting for its outcome"

        failed = waiting[0]
        async with sessions() as session, session.begin():
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": failed})

        async def went_on() -> bool:  # on a new connection, whose outcomes wait for it too
            return any(pid != failed for pid in await waiting_group_commits(sessions))

        await wait_for(went_on, 30, "the worker to go on after the failed commit")
        async with sessions() as session:
            statuses = set(
                await session.scalars(
                    text("SELECT status FROM meter_reports WHERE identifier = ANY(:ids)"),
                    {"ids": list(caught)},
                )
            )
        assert statuses == {"pending"}, "an outcome of the failed statement was written"
    finally:
        await blocker.rollback()
        await blocker.close()
    await drain(worker, sessions)

    assert_stripe_has_exactly_the_usage(orgs, standin)
    assert set(await ledger_counts(sessions)) <= {"sent", "skipped"}
    # Each retry was answered from Stripe's idempotency layer: the event was recorded once.
    assert standin.state.counters_snapshot().idempotent_replays >= len(caught)
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    try:
        for identifier in caught:
            job = await queue.getJob(identifier)
            assert job.attemptsMade >= 2, (identifier, job.attemptsMade)
    finally:
        await queue.close()
