"""Event ids this process has seen committed, so most duplicates are answered without a query.

Stripe redelivers an event it thinks failed (a timeout, a lost answer) and sometimes twice for
one change; during a storm most deliveries are copies. An id enters here only after
`stripe_events` holds it (committed by this process, or found there), and rows leave that table
only through retention, weeks after Stripe's 3-day retry window; so an id found here is a
duplicate for certain. A miss proves nothing: the insert stays the arbiter, and other processes
keep their own sets.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

# About 100 bytes an entry: some 10 MB per process, hours of deliveries at a high rate.
DEFAULT_CAPACITY: Final = 100_000


class RecentEvents:
    """A bounded set of committed event ids; the oldest-added leave first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        """Call only once `stripe_events` holds the id (after the commit)."""
        if event_id in self._ids:
            return
        self._ids[event_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
