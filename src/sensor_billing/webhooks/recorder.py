"""Recording events that have no handler, many concurrent deliveries per statement.

For such an event the insert into `stripe_events` is the whole effect, so the deliveries that
arrive while one insert is in flight can share the next one (a group commit): one statement,
one transaction, one WAL flush for all of them, and one answer each. The first delivery of an
idle process goes out at once, so this adds no wait when traffic is light.

Each delivery still gets its answer only after its row is committed. If a shared statement
fails, each of its events is retried alone, so one bad event cannot fail the others; an event
whose own insert fails raises for its deliveries only (the endpoint answers 5xx and Stripe
delivers again).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.errors import RecordingInterruptedError
from sensor_billing.webhooks import repository

logger = logging.getLogger("sensor_billing.webhooks")

# Bounds one statement's arrays; a storm larger than this goes out in several statements.
MAX_BATCH: Final = 500


class EventRecorder:
    """Records (event id, type) pairs for one process; `record` answers whether it was new."""

    def __init__(self, engine: AsyncEngine, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._engine = engine
        self._max_batch = max_batch
        # event id -> (type, one future per waiting delivery), in arrival order
        self._waiting: dict[str, tuple[str, list[asyncio.Future[bool]]]] = {}
        self._writer: asyncio.Task[None] | None = None

    async def record(self, event_id: str, event_type: str) -> bool:
        """True for the one delivery that recorded the event; False for every copy of it."""
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(event_id)
        if waiting is None:
            self._waiting[event_id] = (event_type, [answer])
        else:
            waiting[1].append(answer)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all())
        # A delivery cancelled while it waits (the client went away) cancels only its own
        # future: the write goes on, and Stripe's redelivery is answered as a duplicate.
        return await answer

    async def aclose(self) -> None:
        """Stop a write still running (the server gave up waiting for its requests): its
        deliveries fail with `RecordingInterruptedError` instead of waiting forever."""
        writer = self._writer
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write_all(self) -> None:
        batch: dict[str, tuple[str, list[asyncio.Future[bool]]]] = {}
        try:
            while self._waiting:
                batch = dict(itertools.islice(self._waiting.items(), self._max_batch))
                for event_id in batch:
                    del self._waiting[event_id]
                await self._write(batch)
        finally:
            self._writer = None
            # Only when this task was cancelled (the process is stopping) is anything left:
            # those deliveries fail (5xx) rather than wait forever, and Stripe delivers again.
            interrupted = RecordingInterruptedError("the process stopped while recording")
            for _, answers in [*batch.values(), *self._waiting.values()]:
                self._fail(answers, interrupted)
            self._waiting.clear()

    async def _write(self, batch: dict[str, tuple[str, list[asyncio.Future[bool]]]]) -> None:
        events = sorted((event_id, waiting[0]) for event_id, waiting in batch.items())
        try:
            if len(events) == 1:
                event_id, event_type = events[0]
                recorded = await repository.record_event_autocommit(
                    self._engine, event_id, event_type
                )
                new = {event_id} if recorded else set()
            else:
                new = await repository.record_events_autocommit(self._engine, events)
        except Exception as error:
            if len(events) == 1:
                self._fail(batch[events[0][0]][1], error)
                return
            logger.warning(
                "recording %d events in one statement failed (%s); recording each alone",
                len(events),
                type(error).__name__,
            )
            # One after another: up to MAX_BATCH inserts at once would drain the pool.
            for event_id, _ in events:
                await self._write({event_id: batch[event_id]})
            return
        for event_id, (_, answers) in batch.items():
            first, *copies = answers
            _answer(first, event_id in new)
            for copy in copies:
                _answer(copy, False)

    @staticmethod
    def _fail(answers: list[asyncio.Future[bool]], error: Exception) -> None:
        for answer in answers:
            if not answer.done():
                answer.set_exception(error)


def _answer(answer: asyncio.Future[bool], recorded: bool) -> None:
    if not answer.done():
        answer.set_result(recorded)
