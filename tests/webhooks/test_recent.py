"""Duplicates of events this process committed are answered from memory, never a failed one."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.webhooks.recent import RecentEvents
from tests.support.state import count
from tests.support.stripe_events import deliver, make_event
from tests.webhooks.conftest import SECRET


async def test_a_copy_of_a_committed_event_is_answered_without_the_database(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    event = make_event("customer.updated", {"id": "cus_recent"}, created=1_764_000_000)
    assert (await deliver(client, event, secret=SECRET)).json()["outcome"] == "processed"
    # Behind the app's back: if the copy reached the database it would be recorded again.
    async with unit_of_work(sessions) as session:
        await session.execute(text("DELETE FROM stripe_events"))

    copy = await deliver(client, event, secret=SECRET)

    assert copy.status_code == 200
    assert copy.json()["outcome"] == "duplicate"
    assert await count(sessions, "stripe_events") == 0


def test_the_oldest_ids_leave_first_when_full() -> None:
    recent = RecentEvents(capacity=2)
    for event_id in ("evt_1", "evt_2", "evt_1", "evt_3"):
        recent.add(event_id)
    assert "evt_1" not in recent  # added first; adding it again did not refresh it
    assert "evt_2" in recent
    assert "evt_3" in recent
    assert len(recent) == 2
    with pytest.raises(ValueError, match="capacity"):
        RecentEvents(capacity=0)
