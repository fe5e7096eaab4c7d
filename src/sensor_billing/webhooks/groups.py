"""Handled deliveries that arrive together, applied together: one transaction per group.

A handled webhook applied alone costs about ten statements, each a round trip whose client side
(asyncpg, the event loop) cost more CPU than PostgreSQL's work. Deliveries that arrive while
others are being applied wait and form the next group: events of one type that touch distinct
objects, customers and organizations (`handlers.group_keys`), applied by the type's group form
(`handlers.GROUP_HANDLERS`) with each step one statement for the whole group
(`service.deliver_together`). The first delivery of an idle process is applied at once, alone,
so this adds no wait when traffic is light.

What stays as it was:
- each delivery is answered only after its group committed, and a job for a changed
  entitlement is added after that commit;
- an event is applied by the same rules alone or in a group (`billing.service.decide_*`);
- an event whose keys are in a group being applied waits for it, and events sharing a key go
  in arrival order: two events of one object are never applied at once in one process (other
  processes are serialised by the objects' locks, as before);
- any error in a group (a `SameSecondConflict`, a `GroupConflict`, a failed statement) rolls
  the whole group back, and its events are then applied one at a time, as they would be
  without groups: one bad event fails only its own deliveries (5xx, and Stripe delivers it
  again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.errors import RecordingInterruptedError
from sensor_billing.observability.metrics import record_webhook_group
from sensor_billing.webhooks.entitlement_changes import EntitlementNotifier
from sensor_billing.webhooks.envelope import StripeEventEnvelope
from sensor_billing.webhooks.handlers import GROUP_HANDLERS, HANDLERS, group_keys
from sensor_billing.webhooks.service import (
    ALREADY_PROCESSED,
    Outcome,
    Processed,
    SubscriptionFetcher,
    deliver_alone,
    deliver_together,
)

logger = logging.getLogger("sensor_billing.webhooks")

# Bounds one group's statements and the time its row locks are held.
MAX_GROUP: Final = 100
# Groups being applied at once by one process, each on a pooled connection: while one waits
# for PostgreSQL the next forms and goes out.
MAX_GROUPS_IN_FLIGHT: Final = 2
# Under load (a group finished within BUSY_SECONDS), a group waits up to COLLECT_SECONDS for
# more deliveries before it goes: the answers of one group bring the next deliveries in a burst,
# whose first would otherwise go alone. An idle process applies a delivery at once.
BUSY_SECONDS: Final = 0.005
# A group goes while another is being applied only with at least this many events: fewer
# wait for the next group, which costs them less than going alone.
MIN_SECOND_GROUP: Final = 4
COLLECT_SECONDS: Final = 0.001


@dataclass
class _Waiting:
    event: StripeEventEnvelope
    keys: frozenset[str]
    fetch_subscription: SubscriptionFetcher
    # One per delivery of the event that waits (Stripe's copies, sent at once).
    answers: list[asyncio.Future[Processed]] = field(default_factory=list)


class HandledDeliveries:
    """Handled deliveries of one process, applied in groups; `deliver` answers one."""

    def __init__(
        self,
        engine: AsyncEngine,
        notifier: EntitlementNotifier | None,
        *,
        max_group: int = MAX_GROUP,
        max_in_flight: int = MAX_GROUPS_IN_FLIGHT,
    ) -> None:
        if max_group < 1 or max_in_flight < 1:
            raise ValueError("max_group and max_in_flight must be at least 1")
        self._engine = engine
        self._notifier = notifier
        self._max_group = max_group
        self._max_in_flight = max_in_flight
        # event id -> the deliveries waiting for it, in arrival order
        self._waiting: dict[str, _Waiting] = {}
        # The keys of the events being applied.
        self._busy: set[str] = set()
        self._groups: set[asyncio.Task[None]] = set()
        self._closed = False
        self._last_done = -1.0
        self._collecting: asyncio.TimerHandle | None = None

    async def deliver(
        self, event: StripeEventEnvelope, fetch_subscription: SubscriptionFetcher
    ) -> Processed:
        if self._closed:
            raise RecordingInterruptedError("the process is stopping")
        answer: asyncio.Future[Processed] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(event.id)
        if waiting is None:
            waiting = _Waiting(event, group_keys(event), fetch_subscription)
            self._waiting[event.id] = waiting
        waiting.answers.append(answer)
        self._start_or_collect()
        # A delivery cancelled while it waits (the client went away) cancels only its own
        # future: its group goes on, and Stripe's redelivery is answered as a duplicate.
        return await answer

    async def aclose(self) -> None:
        """Stop the groups being applied (the server gave up waiting for its requests): their
        deliveries, and those still waiting, fail with `RecordingInterruptedError`."""
        self._closed = True
        groups = list(self._groups)
        for group in groups:
            group.cancel()
        for group in groups:
            with contextlib.suppress(asyncio.CancelledError):
                await group
        interrupted = RecordingInterruptedError("the process stopped while applying events")
        for waiting in self._waiting.values():
            _fail(waiting, interrupted)
        self._waiting.clear()

    def _start_or_collect(self) -> None:
        if self._collecting is not None:
            if len(self._waiting) >= self._max_group:
                self._collecting.cancel()
                self._start_groups()
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_done < BUSY_SECONDS and len(self._waiting) < self._max_group:
            self._collecting = loop.call_later(COLLECT_SECONDS, self._start_groups)
        else:
            self._start_groups()

    def _start_groups(self) -> None:
        if self._collecting is not None:
            self._collecting.cancel()
            self._collecting = None
        while not self._closed and len(self._groups) < self._max_in_flight:
            group = self._next_group()
            if not group or (self._groups and len(group) < MIN_SECOND_GROUP):
                return
            for waiting in group:
                del self._waiting[waiting.event.id]
                self._busy |= waiting.keys
            task = asyncio.create_task(self._apply(group))
            self._groups.add(task)
            task.add_done_callback(self._groups.discard)

    def _next_group(self) -> list[_Waiting]:
        """The oldest event that can go and, after it, those of its type that can go with it.
        An event passed over blocks its keys for the events after it: each key's events go in
        arrival order."""
        blocked = set(self._busy)
        group: list[_Waiting] = []
        for waiting in self._waiting.values():
            fits = not (waiting.keys & blocked) and (
                not group or waiting.event.type == group[0].event.type
            )
            blocked |= waiting.keys
            if fits:
                group.append(waiting)
                if len(group) == self._max_group:
                    break
        return group

    async def _apply(self, group: list[_Waiting]) -> None:
        try:
            outcomes = await self._outcomes(group)
            for waiting, outcome in zip(group, outcomes, strict=True):
                _answer(waiting, outcome)
        except BaseException:  # cancelled (aclose): the deliveries fail, Stripe delivers again
            interrupted = RecordingInterruptedError("the process stopped while applying events")
            for waiting in group:
                _fail(waiting, interrupted)
            raise
        finally:
            for waiting in group:
                self._busy -= waiting.keys
            self._last_done = asyncio.get_running_loop().time()
            # Done now, as far as forming the next group goes (the callback comes later).
            if (task := asyncio.current_task()) is not None:
                self._groups.discard(task)
            self._start_groups()

    async def _outcomes(self, group: list[_Waiting]) -> list[Processed | Exception]:
        handle = GROUP_HANDLERS.get(HANDLERS[group[0].event.type])
        if len(group) > 1 and handle is not None:
            try:
                processed = await deliver_together(
                    self._engine, [waiting.event for waiting in group], handle, self._notifier
                )
                record_webhook_group(len(group), rolled_back=False)
                return list(processed)
            except Exception as error:
                record_webhook_group(len(group), rolled_back=True)
                logger.info(
                    "a group of %d %s events was rolled back (%s: %s); applying each alone",
                    len(group),
                    group[0].event.type,
                    type(error).__name__,
                    error,
                )
        outcomes: list[Processed | Exception] = []
        for waiting in group:
            record_webhook_group(1, rolled_back=False)
            try:
                outcomes.append(
                    await deliver_alone(
                        self._engine, waiting.event, waiting.fetch_subscription, self._notifier
                    )
                )
            except Exception as error:
                outcomes.append(error)
        return outcomes


def _answer(waiting: _Waiting, outcome: Processed | Exception) -> None:
    if isinstance(outcome, Exception):
        _fail(waiting, outcome)
        return
    first, *copies = waiting.answers
    if not first.done():
        first.set_result(outcome)
    for copy in copies:
        if not copy.done():
            copy.set_result(Processed(Outcome.DUPLICATE, ALREADY_PROCESSED))


def _fail(waiting: _Waiting, error: Exception) -> None:
    for answer in waiting.answers:
        if not answer.done():
            answer.set_exception(error)
