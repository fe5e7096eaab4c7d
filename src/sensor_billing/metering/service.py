"""Closing usage windows into the ledger. Nothing here commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.metering import repository
from sensor_billing.metering.windows import last_closable_end, oldest_sendable_timestamp


@dataclass(frozen=True, slots=True)
class ClosePolicy:
    window: timedelta
    grace: timedelta
    backfill_start: datetime | None = None


@dataclass(frozen=True, slots=True)
class CloseSummary:
    closed_through: datetime
    rows_by_status: dict[str, int]
    organizations_started: int
    # Readings billed in these rows by arrival: their transaction committed after the window
    # of their `received_at` had been closed.
    late_readings: int = 0
    # Organizations without a (live) Stripe customer: not metered. A sample, for the log.
    organizations_without_customer: list[uuid.UUID] = field(default_factory=list)

    @property
    def rows_created(self) -> int:
        return sum(self.rows_by_status.values())


async def close_windows(session: AsyncSession, policy: ClosePolicy, now: datetime) -> CloseSummary:
    """Write ledger rows for every window that ended (plus the grace) and is not closed yet,
    for every organization with a Stripe customer. Closing twice creates nothing new."""
    await repository.lock_closing(session)
    last_end = last_closable_end(now, policy.window, policy.grace)
    sendable_from = oldest_sendable_timestamp(now)
    started = await repository.start_new_cursors(
        session,
        window=policy.window,
        last_end=last_end,
        sendable_from=sendable_from,
        backfill_start=policy.backfill_start,
    )
    closed = await repository.close_windows(
        session, window=policy.window, last_end=last_end, sendable_from=sendable_from
    )
    await repository.fail_unsendable(session, sendable_from)
    return CloseSummary(
        closed_through=last_end,
        rows_by_status=closed.by_status,
        organizations_started=started,
        late_readings=closed.late_readings,
        organizations_without_customer=await repository.organizations_without_customer(
            session, limit=20
        ),
    )
