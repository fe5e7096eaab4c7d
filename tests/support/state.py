"""Snapshots of everything a webhook may write, to compare before and after."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from sensor_billing.db import SessionFactory

STATE_TABLES = (
    "stripe_events",
    "organizations",
    "stripe_subscriptions",
    "stripe_invoices",
    "billing_state_changes",
)


async def snapshot(sessions: SessionFactory) -> dict[str, list[dict[str, Any]]]:
    async with sessions() as session:
        state = {}
        for table in STATE_TABLES:
            rows = await session.execute(text(f"SELECT * FROM {table} ORDER BY 1"))
            state[table] = [dict(row._mapping) for row in rows]
        return state


async def count(sessions: SessionFactory, table: str, where: str = "true") -> int:
    async with sessions() as session:
        value = await session.scalar(text(f"SELECT count(*) FROM {table} WHERE {where}"))
        return int(value or 0)
