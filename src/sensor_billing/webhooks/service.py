"""Processing one verified delivery: record the event, run its handler, in the caller's
transaction. The caller commits; a handler error propagates so the caller rolls back and
Stripe, answered 5xx, delivers the event again later."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.billing.service import Effect, Result
from sensor_billing.webhooks import repository
from sensor_billing.webhooks.envelope import StripeEventEnvelope
from sensor_billing.webhooks.handlers import HANDLERS, Handler


class Outcome(enum.StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class Processed:
    outcome: Outcome
    result: Result


UNHANDLED = Result(Effect.IGNORED, "event type has no handler")
ALREADY_PROCESSED = Result(Effect.UNCHANGED, "event already processed")


async def process_event(
    session: AsyncSession,
    event: StripeEventEnvelope,
    handlers: dict[str, Handler] = HANDLERS,
) -> Processed:
    if not await repository.record_event(session, event.id, event.type):
        return Processed(Outcome.DUPLICATE, ALREADY_PROCESSED)
    handler = handlers.get(event.type)
    result = await handler(session, event) if handler else UNHANDLED
    return Processed(Outcome.PROCESSED, result)
