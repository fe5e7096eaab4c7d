"""Pruning entitlement notices whose job was added long ago, as webhook events are pruned;
never a notice whose job may still need adding, nor what organizations were last told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.billing.entitlement_notices import prune_enqueued_notices
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.errors import InvalidInputError
from tests.support.billing_state import add_notices, new_organization
from tests.support.state import count

NOW = datetime(2026, 6, 1, tzinfo=UTC)


async def kept(sessions: SessionFactory) -> list[str]:
    async with sessions() as session:
        found = await session.scalars(
            text("SELECT job_id FROM entitlement_notices ORDER BY job_id")
        )
        return list(found)


async def test_notices_whose_job_was_added_before_the_age_are_pruned_in_batches(
    engine: AsyncEngine, sessions: SessionFactory
) -> None:
    org = await new_organization(sessions, "cus_prune")
    await add_notices(sessions, org, [1, 3.5, 29.9, 30.1, 45, 400], now=NOW)

    pruned = await prune_enqueued_notices(engine, timedelta(days=30), now=NOW, batch_size=2)

    assert pruned == 3
    assert await kept(sessions) == ["notice-0", "notice-1", "notice-2"]


async def test_a_notice_whose_job_was_never_marked_added_is_kept_however_old(
    engine: AsyncEngine, sessions: SessionFactory
) -> None:
    org = await new_organization(sessions, "cus_prune")
    await add_notices(sessions, org, [None, 40], now=NOW, made_days_before=400)

    pruned = await prune_enqueued_notices(engine, timedelta(days=30), now=NOW)

    assert pruned == 1
    assert await kept(sessions) == ["notice-0"]


async def test_pruning_notices_keeps_what_each_organization_was_last_told(
    engine: AsyncEngine, sessions: SessionFactory
) -> None:
    org = await new_organization(sessions, "cus_prune")
    await add_notices(sessions, org, [90], now=NOW)
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO notified_entitlements"
                " (organization_id, entitled, reason, job_id, decided_at)"
                " VALUES (:org, true, 'active', 'notice-0', :at)"
            ),
            {"org": org, "at": NOW - timedelta(days=90)},
        )

    assert await prune_enqueued_notices(engine, timedelta(days=30), now=NOW) == 1

    assert await count(sessions, "entitlement_notices") == 0
    assert await count(sessions, "notified_entitlements", "job_id = 'notice-0'") == 1


async def test_pruning_notices_refuses_an_age_inside_stripes_retry_window(
    engine: AsyncEngine, sessions: SessionFactory
) -> None:
    org = await new_organization(sessions, "cus_prune")
    await add_notices(sessions, org, [2.5], now=NOW)

    with pytest.raises(InvalidInputError, match="3-day retry window"):
        await prune_enqueued_notices(engine, timedelta(days=3), now=NOW)

    assert await count(sessions, "entitlement_notices") == 1
