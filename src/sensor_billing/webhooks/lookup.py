"""Whether events are recorded already, many concurrent deliveries per query.

A delivery of a handled type whose id this process has not seen committed (`recent.py`) asks
here before it opens a transaction. A copy that another API process, or this one before a
restart, recorded is then answered from one `SELECT ... WHERE event_id = ANY(...)` shared by
the deliveries waiting at that moment, instead of a transaction of its own: duplicates of
handled types then cost what duplicates of unhandled ones cost (whose insert is shared the same
way, `recorder.py`). A miss proves nothing, and a lookup that fails counts as a miss: the
insert in the delivery's transaction stays the arbiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.webhooks import repository

logger = logging.getLogger("sensor_billing.webhooks")

# Bounds one query's array; more waiting ids go out in several queries.
MAX_BATCH: Final = 500


class EventLookup:
    """`recorded(event_id)`: True when `stripe_events` holds the id (committed)."""

    def __init__(self, engine: AsyncEngine, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._engine = engine
        self._max_batch = max_batch
        self._waiting: dict[str, list[asyncio.Future[bool]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def recorded(self, event_id: str) -> bool:
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(event_id, []).append(answer)
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_all())
        return await answer

    async def aclose(self) -> None:
        """Stop a query still running; its deliveries count it as a miss."""
        reader = self._reader
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read_all(self) -> None:
        batch: dict[str, list[asyncio.Future[bool]]] = {}
        try:
            while self._waiting:
                batch = dict(itertools.islice(self._waiting.items(), self._max_batch))
                for event_id in batch:
                    del self._waiting[event_id]
                try:
                    found = await repository.recorded_events(self._engine, sorted(batch))
                except Exception as error:
                    logger.warning("looking up %d event ids failed (%s)", len(batch), error)
                    found = set()
                _answer(batch, found)
                batch = {}
        finally:
            self._reader = None
            _answer({**batch, **self._waiting}, set())
            self._waiting.clear()


def _answer(batch: dict[str, list[asyncio.Future[bool]]], found: set[str]) -> None:
    for event_id, answers in batch.items():
        for answer in answers:
            if not answer.done():  # a delivery whose client went away cancelled its own
                answer.set_result(event_id in found)
