"""SQL for the daily checks' record (`reconciliation_runs`). Nothing here commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from sensor_billing.db.schema import ReconciliationRun


async def record_run(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(ReconciliationRun).values(**values))


@dataclass(frozen=True, slots=True)
class RunSummary:
    period_start: datetime
    period_end: datetime
    outcome: str
    hours_compared: int
    hours_with_drift: int
    hours_unsent: int
    organizations_with_drift: int
    readings_drift: Decimal
    events_pruned: int
    notices_pruned: int
    error: str | None
    finished_at: datetime


_RUN = ReconciliationRun


async def latest_run(connection: AsyncConnection | AsyncSession) -> RunSummary | None:
    """The newest run (through the index on finished_at), or None before the first."""
    row = (
        await connection.execute(
            select(
                _RUN.period_start,
                _RUN.period_end,
                _RUN.outcome,
                _RUN.hours_compared,
                _RUN.hours_with_drift,
                _RUN.hours_unsent,
                _RUN.organizations_with_drift,
                _RUN.readings_drift,
                _RUN.events_pruned,
                _RUN.notices_pruned,
                _RUN.error,
                _RUN.finished_at,
            )
            .order_by(_RUN.finished_at.desc())
            .limit(1)
        )
    ).first()
    return RunSummary(**row._mapping) if row is not None else None
