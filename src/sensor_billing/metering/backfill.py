"""Backfilling missing windows into the ledger, for an operator. Nothing here commits.

What is missing is the time in the range that no window row of the organization covers, per
meter, before its cursor (`repository.MISSING_WINDOWS`), cut on the current window grid.
Coverage, not the ledger key, decides: after METER_WINDOW_SECONDS changed, the old grid's rows
overlap the new grid's windows without sharing their start, and a window re-measured over them
would bill their readings a second time. The pieces are measured as the worker measures a
window; those Stripe can no longer accept become `skipped` rows. Existing rows stay as they
are, and the cursor is not moved: windows after it are the worker's to close.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.errors import InvalidInputError
from sensor_billing.metering import repository
from sensor_billing.metering.service import ClosePolicy
from sensor_billing.metering.windows import (
    floor_to_window,
    last_closable_end,
    oldest_sendable_timestamp,
)

# Windows are aligned on the Unix epoch (windows.floor_to_window, date_bin in the SQL).
GRID_ORIGIN = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    start: datetime  # first window start, aligned
    end: datetime  # last window end, aligned, never past what may be closed now
    # Metered organizations with missing windows in the range, and how many windows each.
    missing_by_organization: dict[uuid.UUID, int]

    @property
    def missing_windows(self) -> int:
        return sum(self.missing_by_organization.values())


def backfill_range(
    since: datetime, until: datetime, policy: ClosePolicy, now: datetime
) -> tuple[datetime, datetime]:
    """The windows that overlap [since, until) and have closed by `now`, as [start, end)."""
    if since >= until:
        raise InvalidInputError(
            f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})"
        )
    if since < GRID_ORIGIN:
        # No usage is older, and every window back to `since` would get a row: a typo such as
        # 0202 for 2026 meant millions of rows per organization, and the driver sends
        # 0001-01-01 as -infinity, which PostgreSQL would count windows from without end.
        raise InvalidInputError(
            f"--since {since.isoformat()} is before 1970-01-01, where the window grid starts"
        )
    start = floor_to_window(since, policy.window)
    end = floor_to_window(until, policy.window)
    if end < until:
        end += policy.window
    return start, min(end, last_closable_end(now, policy.window, policy.grace))


async def plan_backfill(
    session: AsyncSession,
    policy: ClosePolicy,
    *,
    since: datetime,
    until: datetime,
    now: datetime,
    organization_id: uuid.UUID | None = None,
) -> BackfillPlan:
    """Which organizations miss which windows in the range. An unknown or unmetered
    `organization_id` is a `InvalidInputError` (bad input, nothing to do)."""
    if organization_id is not None:
        organization = await repository.find_organization(session, organization_id)
        if organization is None:
            raise InvalidInputError(f"no organization with id {organization_id}")
        if not organization.metered:
            raise InvalidInputError(
                f"organization {organization_id} has no live Stripe customer: it is not metered"
            )
    start, end = backfill_range(since, until, policy, now)
    missing = (
        await repository.missing_windows(
            session,
            window=policy.window,
            start=start,
            end=end,
            organization_id=organization_id,
        )
        if start < end
        else {}
    )
    return BackfillPlan(start, end, missing)


async def backfill_organization(
    session: AsyncSession,
    policy: ClosePolicy,
    organization_id: uuid.UUID,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
) -> dict[str, int]:
    """Create the organization's missing ledger rows in [start, end); count the rows created
    by status. Run it in a transaction of its own per organization: it holds the closing lock
    (the worker's closer waits on it), so the cursor and the rows cannot move under it."""
    await repository.lock_closing(session)
    return await repository.backfill_windows(
        session,
        window=policy.window,
        start=start,
        end=end,
        organization_id=organization_id,
        sendable_from=oldest_sendable_timestamp(now),
    )
