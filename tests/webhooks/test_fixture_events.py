"""Every recorded fixture event, signed like Stripe signs it, is processed once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sensor_billing.db import SessionFactory
from tests.support.state import count, snapshot
from tests.support.stripe_events import deliver, fixture_event_files, load_event, with_fresh_id
from tests.webhooks.conftest import SECRET


@pytest.mark.parametrize("path", fixture_event_files(), ids=lambda path: path.stem)
async def test_recorded_event_is_processed_once_and_a_replay_changes_nothing(
    path: Path, client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    event = with_fresh_id(load_event(path))

    first = await deliver(client, event, secret=SECRET)
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "processed"
    assert await count(sessions, "stripe_events", f"event_id = '{event['id']}'") == 1
    after_first = await snapshot(sessions)

    replay = await deliver(client, event, secret=SECRET)
    assert replay.status_code == 200
    assert replay.json()["outcome"] == "duplicate"
    assert await snapshot(sessions) == after_first


def test_every_fixture_file_is_exercised() -> None:
    assert len(fixture_event_files()) == 29  # MANIFEST.md "Counts": 29 events
