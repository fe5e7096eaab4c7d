"""Usage windows: UTC-aligned [start, end) of METER_WINDOW_SECONDS, and the names derived
from a window that make reporting it idempotent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

# Stripe accepts meter event timestamps up to 35 days in the past (docs: recording-usage-api).
# Rows are not sent closer than an hour to that edge: a send that waits in a queue or retries
# must still land inside it.
STRIPE_TIMESTAMP_LIMIT = timedelta(days=35)
STRIPE_LIMIT_MARGIN = timedelta(hours=1)


def floor_to_window(moment: datetime, window: timedelta) -> datetime:
    seconds = int(moment.timestamp())
    size = int(window.total_seconds())
    return datetime.fromtimestamp(seconds - seconds % size, UTC)


def last_closable_end(now: datetime, window: timedelta, grace: timedelta) -> datetime:
    """The end of the newest window that has ended at least `grace` ago."""
    return floor_to_window(now - grace, window)


def oldest_sendable_timestamp(now: datetime) -> datetime:
    return now - STRIPE_TIMESTAMP_LIMIT + STRIPE_LIMIT_MARGIN


def event_timestamp(window_end: datetime) -> int:
    """The meter event's timestamp: the window's last second, so Stripe puts the usage in the
    billing period the window belongs to."""
    return int(window_end.timestamp()) - 1


def report_identifier(organization_id: uuid.UUID, event_name: str, window_start: datetime) -> str:
    """Stripe identifier and bullmq job id of a window's report (at most 100 characters; no
    ':' so BullMQ in Node accepts it as a custom job id too)."""
    return f"sb.{organization_id}.{event_name}.{int(window_start.timestamp())}"
