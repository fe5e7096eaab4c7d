"""Billing periods: a subscription's n-th period counted from its billing cycle anchor.

Stripe bills monthly and yearly prices on the anchor's day of the month; a month without that
day ends on its last day, and the next period returns to the anchor's day (a subscription
anchored on January 31 renews on February 28, then March 31) (docs:
billing/subscriptions/billing-cycle). Periods are counted from the anchor, not chained, so a
short month does not shift every later period.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

_DAY = 86400


def _add(anchor: int, interval: str, steps: int) -> int:
    if interval == "day":
        return anchor + steps * _DAY
    if interval == "week":
        return anchor + steps * 7 * _DAY
    months = steps * (12 if interval == "year" else 1)
    moment = datetime.fromtimestamp(anchor, UTC)
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def period(anchor: int, interval: str, interval_count: int, number: int) -> tuple[int, int]:
    """[start, end) of period `number` (0 = the first) of a price billed every
    `interval_count` `interval`s from `anchor`."""
    return (
        _add(anchor, interval, number * interval_count),
        _add(anchor, interval, (number + 1) * interval_count),
    )
