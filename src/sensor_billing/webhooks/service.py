"""Processing one verified delivery exactly once.

`deliver_event` owns the delivery's transaction, the way a request or job wrapper does:
  - a type with a handler: one transaction records the event and runs the handler; any error
    rolls both back and propagates, so the endpoint answers 5xx and Stripe delivers again;
  - a type without a handler: recording the event is its only effect, so one autocommit
    `INSERT ... ON CONFLICT DO NOTHING` is the whole transaction (one round trip, not three).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.billing.service import Effect, Result
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.webhooks import repository
from sensor_billing.webhooks.envelope import StripeEventEnvelope
from sensor_billing.webhooks.handlers import HANDLERS


class Outcome(enum.StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Processed:
    outcome: Outcome
    result: Result


UNHANDLED = Result(Effect.IGNORED, "event type has no handler")
ALREADY_PROCESSED = Result(Effect.UNCHANGED, "event already processed")


async def deliver_event(
    engine: AsyncEngine, sessions: SessionFactory, event: StripeEventEnvelope
) -> Processed:
    handler = HANDLERS.get(event.type)
    if handler is None:
        recorded = await repository.record_event_autocommit(engine, event.id, event.type)
        return Processed(Outcome.PROCESSED if recorded else Outcome.DUPLICATE, UNHANDLED)

    async with unit_of_work(sessions) as session:
        if not await repository.record_event(session, event.id, event.type):
            return Processed(Outcome.DUPLICATE, ALREADY_PROCESSED)
        return Processed(Outcome.PROCESSED, await handler(session, event))
