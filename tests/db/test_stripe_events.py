"""The webhook idempotency store: one row per Stripe event id, timestamped by the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import StripeEvent


async def test_same_event_id_twice_violates_the_unique_index(sessions: SessionFactory) -> None:
    async with unit_of_work(sessions) as session:
        session.add(StripeEvent(event_id="evt_1", event_type="invoice.paid"))

    with pytest.raises(IntegrityError, match="stripe_events_event_id_idx"):
        async with unit_of_work(sessions) as session:
            session.add(StripeEvent(event_id="evt_1", event_type="invoice.paid"))

    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(StripeEvent)) == 1


async def test_processed_at_fills_itself_with_millisecond_precision(
    sessions: SessionFactory,
) -> None:
    before = datetime.now(UTC)
    async with unit_of_work(sessions) as session:
        event = StripeEvent(event_id="evt_2", event_type="customer.deleted")
        session.add(event)
        await session.flush()
        await session.refresh(event)
    assert event.processed_at.tzinfo is not None
    assert event.processed_at.microsecond % 1000 == 0
    assert (
        before - timedelta(seconds=5)
        <= event.processed_at
        <= datetime.now(UTC) + timedelta(seconds=5)
    )
    assert event.id is not None


async def test_unit_of_work_rolls_back_everything_when_the_block_fails(
    sessions: SessionFactory,
) -> None:
    with pytest.raises(RuntimeError):
        async with unit_of_work(sessions) as session:
            session.add(StripeEvent(event_id="evt_3", event_type="invoice.paid"))
            await session.flush()
            raise RuntimeError("handler failed")

    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(StripeEvent)) == 0
