"""Ledger rows written with plain SQL, for the usage-so-far tests: the
figures a test expects are sums it makes of what it wrote, never what the code under test
computes."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work

HOUR = timedelta(hours=1)


async def add_report(
    sessions: SessionFactory,
    organization_id: uuid.UUID,
    event_name: str,
    window_start: datetime,
    value: int,
    status: str = "sent",
    *,
    window: timedelta = HOUR,
    stripe_error_code: str | None = None,
) -> None:
    """One window row of the ledger, as a close (and a send) leaves it."""
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO meter_reports (organization_id, event_name, window_start,"
                " window_end, value, stripe_customer_id, identifier, status, skip_reason,"
                " stripe_error_code) VALUES (:org, :event, :start, :end, :value,"
                " (SELECT stripe_customer_id FROM organizations WHERE id = :org),"
                " :identifier, :status, :skip, :code)"
            ),
            {
                "org": organization_id,
                "event": event_name,
                "start": window_start,
                "end": window_start + window,
                "value": value,
                "identifier": f"sb.{organization_id}.{event_name}.{int(window_start.timestamp())}",
                "status": status,
                "skip": "no readings in the window" if status == "skipped" else None,
                "code": stripe_error_code,
            },
        )
