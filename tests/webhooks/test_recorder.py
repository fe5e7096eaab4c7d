"""Events without a handler: concurrent deliveries share one insert, each answered correctly."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.db import SessionFactory
from sensor_billing.db.engine import create_engine
from sensor_billing.errors import RecordingInterruptedError
from sensor_billing.webhooks import repository
from sensor_billing.webhooks.recorder import EventRecorder
from tests.support.state import count


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every shared insert the recorder sends (the real one still runs)."""
    sizes: list[int] = []
    real = repository.record_events_autocommit

    async def counted(engine: AsyncEngine, events: Sequence[tuple[str, str]]) -> set[str]:
        sizes.append(len(events))
        return await real(engine, events)

    monkeypatch.setattr(repository, "record_events_autocommit", counted)
    return sizes


async def recorded_ids(sessions: SessionFactory) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(text("SELECT event_id FROM stripe_events ORDER BY event_id"))
        return [str(row[0]) for row in rows]


async def test_concurrent_deliveries_share_inserts_and_each_event_is_recorded_once(
    engine: AsyncEngine, sessions: SessionFactory, statements: list[int]
) -> None:
    recorder = EventRecorder(engine)
    ids = [f"evt_batch_{index:03}" for index in range(120)]
    # Every event twice, copies interleaved: one delivery of each may say "recorded".
    deliveries = [*ids, *reversed(ids)]

    answers = await asyncio.gather(*(recorder.record(i, "customer.updated") for i in deliveries))

    recorded_by = {i: 0 for i in ids}
    for event_id, recorded in zip(deliveries, answers, strict=True):
        recorded_by[event_id] += recorded
    assert set(recorded_by.values()) == {1}
    assert await recorded_ids(sessions) == ids
    # 240 deliveries arrived before the first insert began: one statement for them all.
    assert statements == [120]


async def test_a_batch_is_split_at_its_limit(
    engine: AsyncEngine, sessions: SessionFactory, statements: list[int]
) -> None:
    recorder = EventRecorder(engine, max_batch=25)
    ids = [f"evt_limit_{index:03}" for index in range(101)]

    answers = await asyncio.gather(*(recorder.record(i, "customer.updated") for i in ids))

    assert all(answers)
    assert statements == [25, 25, 25, 25]  # and the last event alone, the single-row insert
    assert len(await recorded_ids(sessions)) == 101


async def test_an_event_recorded_before_is_a_duplicate_in_a_shared_insert(
    engine: AsyncEngine, sessions: SessionFactory
) -> None:
    recorder = EventRecorder(engine)
    assert await recorder.record("evt_old", "customer.updated")

    answers = await asyncio.gather(
        recorder.record("evt_first", "customer.updated"),
        recorder.record("evt_new", "customer.updated"),
        recorder.record("evt_old", "customer.updated"),
    )

    assert list(answers) == [True, True, False]
    assert await recorded_ids(sessions) == ["evt_first", "evt_new", "evt_old"]


async def test_one_event_that_cannot_be_stored_fails_alone(
    engine: AsyncEngine, sessions: SessionFactory
) -> None:
    recorder = EventRecorder(engine)
    unstorable = "t" * 300  # wider than the event_type column: PostgreSQL refuses the row

    results = await asyncio.gather(
        recorder.record("evt_lead", "customer.updated"),
        recorder.record("evt_good_1", "customer.updated"),
        recorder.record("evt_bad", unstorable),
        recorder.record("evt_good_2", "customer.updated"),
        return_exceptions=True,
    )

    assert list(results[:2]) == [True, True]
    assert isinstance(results[2], Exception)
    assert "too long" in str(results[2])
    assert results[3] is True
    assert await recorded_ids(sessions) == ["evt_good_1", "evt_good_2", "evt_lead"]
    # The failure is not remembered: the event is recorded once it can be (Stripe retries).
    assert await recorder.record("evt_bad", "customer.updated")


async def test_a_delivery_that_gives_up_waiting_does_not_stop_the_insert(
    engine: AsyncEngine, sessions: SessionFactory
) -> None:
    recorder = EventRecorder(engine)
    delivery = asyncio.ensure_future(recorder.record("evt_gone", "customer.updated"))
    await asyncio.sleep(0)  # the insert has started
    delivery.cancel()

    with pytest.raises(asyncio.CancelledError):
        await delivery
    # The event is committed regardless: Stripe's redelivery will be answered as a duplicate.
    assert not await recorder.record("evt_gone", "customer.updated")
    assert await count(sessions, "stripe_events") == 1


async def test_closing_fails_the_deliveries_still_waiting(
    database_url: str, sessions: SessionFactory
) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        recorder = EventRecorder(engine)
        async with engine.connect() as held:  # the only connection: the insert must wait
            await held.execute(text("SELECT 1"))
            delivery = asyncio.ensure_future(recorder.record("evt_late", "customer.updated"))
            await asyncio.sleep(0.05)
            await recorder.aclose()
            with pytest.raises(RecordingInterruptedError):
                await delivery
    finally:
        await engine.dispose()
    assert await count(sessions, "stripe_events") == 0
