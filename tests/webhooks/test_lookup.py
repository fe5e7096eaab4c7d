"""Handled types: a copy recorded already is found by a lookup that concurrent deliveries
share, and a lookup that finds nothing (or fails) leaves the decision to the insert."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.db import SessionFactory
from sensor_billing.db.engine import create_engine
from sensor_billing.settings import Settings
from sensor_billing.webhooks import repository
from sensor_billing.webhooks.lookup import EventLookup
from tests.support.app import running_app
from tests.support.state import count
from tests.support.stripe_events import deliver, make_event
from tests.webhooks.conftest import SECRET

T0 = 1_764_000_000


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many ids each shared lookup asked for (the real query still runs)."""
    sizes: list[int] = []
    real = repository.recorded_events

    async def counted(engine: AsyncEngine, event_ids: Sequence[str]) -> set[str]:
        sizes.append(len(event_ids))
        return await real(engine, event_ids)

    monkeypatch.setattr(repository, "recorded_events", counted)
    return sizes


async def test_concurrent_lookups_share_one_query_and_find_only_recorded_ids(
    engine: AsyncEngine, sessions: SessionFactory, queries: list[int]
) -> None:
    for event_id in ("evt_seen_1", "evt_seen_2"):
        assert await repository.record_event_autocommit(engine, event_id, "invoice.paid")
    lookup = EventLookup(engine)
    asked = ["evt_seen_1", "evt_new_1", "evt_seen_2", "evt_new_2", "evt_seen_1"]

    answers = await asyncio.gather(*(lookup.recorded(event_id) for event_id in asked))

    assert answers == [True, False, True, False, True]
    assert queries == [4]  # five deliveries, four distinct ids, one query


async def test_a_lookup_that_fails_counts_as_not_recorded(sessions: SessionFactory) -> None:
    unreachable = create_engine("postgresql://postgres@127.0.0.1:9/none")
    try:
        assert await EventLookup(unreachable).recorded("evt_anything") is False
    finally:
        await unreachable.dispose()


def paid(invoice_id: str) -> dict[str, object]:
    invoice = {"id": invoice_id, "object": "invoice", "customer": "cus_lookup", "amount_due": 1}
    return make_event("invoice.paid", invoice, created=T0)


async def test_a_copy_another_process_recorded_is_a_duplicate_without_a_second_effect(
    settings: Settings, sessions: SessionFactory, queries: list[int]
) -> None:
    event = paid("in_lookup")
    async with running_app(settings) as (_, first):
        assert (await deliver(first, event, secret=SECRET)).json()["outcome"] == "processed"
    # A second process (its memory of answered ids empty) gets the copy.
    async with running_app(settings) as (_, second):
        again: httpx.Response = await deliver(second, event, secret=SECRET)

    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    assert queries == [1, 1]  # one lookup per process, each for its one delivery
    assert await count(sessions, "stripe_events") == 1
    assert await count(sessions, "billing_state_changes") == 1
