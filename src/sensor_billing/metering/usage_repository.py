"""SQL for an organization's usage in a billing period, as the ledger holds it. Read-only.

A row belongs to the period its meter event's timestamp falls in (the window's last second,
`metering.windows.event_timestamp`): Stripe bills an event in the invoice period holding its
timestamp, and reconciliation buckets rows the same way (`corrections_repository`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# A row Stripe accepted and later reported invalid (a thin meter error event named it) is not
# billed: it is counted apart from `sent`, until `usage resend` re-sends it as a new row (its
# `replaced_by_id`): the new row's figure then stands for that usage, as in reconciliation.
# Cancelled and skipped rows are never billed.
#
# No row spans more than a day (a window divides a day; a job's row is one second), so
# `window_start >= start - 1 day` bounds the scan on (organization_id, window_start) without
# losing a row whose last second is in the period.
LEDGER_USAGE = text("""
SELECT event_name,
       CASE WHEN status = 'sent' AND stripe_error_code IS NOT NULL THEN 'invalid'
            ELSE status END AS figure,
       count(*) AS rows,
       coalesce(sum(value), 0) AS total,
       (array_agg(value ORDER BY window_end DESC, id DESC))[1] AS newest
  FROM meter_reports
 WHERE organization_id = :organization_id
   AND status IN ('sent', 'pending', 'failed')
   AND replaced_by_id IS NULL
   AND window_start >= CAST(:start AS timestamptz) - interval '1 day'
   AND window_start < :end
   AND window_end - interval '1 second' >= :start
   AND window_end - interval '1 second' < :end
 GROUP BY 1, 2
""")


@dataclass(frozen=True, slots=True)
class LedgerFigure:
    """One meter's rows of one kind (sent, pending, failed, invalid) in a period."""

    event_name: str
    figure: str
    rows: int
    total: int  # the sum of their values (what a `sum` meter bills)
    newest: int  # the value of the row with the latest timestamp (what a `last` meter bills)


async def ledger_usage(
    session: AsyncSession, organization_id: uuid.UUID, *, start: datetime, end: datetime
) -> list[LedgerFigure]:
    rows = await session.execute(
        LEDGER_USAGE, {"organization_id": organization_id, "start": start, "end": end}
    )
    return [
        LedgerFigure(str(name), str(figure), int(count), int(total), int(newest))
        for name, figure, count, total, newest in rows
    ]
