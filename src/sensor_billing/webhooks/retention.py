"""Pruning `stripe_events`, so the idempotency store does not grow forever.

A pruned event id could be processed again if Stripe delivered it once more, so the age must
stay well past Stripe's retry window (live mode retries for up to 3 days; docs: webhooks).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.errors import InvalidInputError
from sensor_billing.webhooks import repository

STRIPE_RETRY_WINDOW = timedelta(days=3)
DEFAULT_RETENTION = timedelta(days=30)
MAX_RETENTION = timedelta(days=100 * 365)
# Deleting in batches, each its own short transaction, keeps locks and WAL bursts small on a
# large table; a crash between batches leaves only fewer rows to delete next time.
PRUNE_BATCH_SIZE = 10_000

_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_age(text: str) -> timedelta:
    """'30d', '72h', '90m' -> timedelta; refuses ages inside Stripe's retry window."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhm])\s*", text)
    if not match:
        raise InvalidInputError(f"age {text!r} is not like 30d, 72h or 90m")
    try:
        age = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        age = timedelta.max
    if age > MAX_RETENTION:
        # Beyond this, "now minus the age" is no date (OverflowError) long before year 1.
        raise InvalidInputError(f"age {text!r} is too long: at most {MAX_RETENTION.days}d")
    if age <= STRIPE_RETRY_WINDOW:
        raise InvalidInputError(
            f"age {text!r} is inside Stripe's 3-day retry window: a retried event could be "
            "processed twice; use more than 3d (default 30d)"
        )
    return age


class DeleteBatch(Protocol):
    """Delete up to `limit` rows older than `before`, in a transaction of its own; how many."""

    async def __call__(self, before: datetime, limit: int) -> int: ...


async def prune_in_batches(
    delete_batch: DeleteBatch,
    older_than: timedelta,
    *,
    now: datetime | None,
    batch_size: int,
) -> int:
    """Every row older than `older_than`, one batch after another; how many."""
    if older_than <= STRIPE_RETRY_WINDOW:
        raise InvalidInputError("retention must be longer than Stripe's 3-day retry window")
    before = (now or datetime.now(UTC)) - older_than
    total = 0
    while True:
        deleted = await delete_batch(before, batch_size)
        total += deleted
        if deleted < batch_size:
            return total


async def prune_processed_events(
    sessions: SessionFactory,
    older_than: timedelta = DEFAULT_RETENTION,
    *,
    now: datetime | None = None,
    batch_size: int = PRUNE_BATCH_SIZE,
) -> int:
    async def delete_batch(before: datetime, limit: int) -> int:
        async with unit_of_work(sessions) as session:
            return await repository.prune_events(session, before, limit)

    return await prune_in_batches(delete_batch, older_than, now=now, batch_size=batch_size)
