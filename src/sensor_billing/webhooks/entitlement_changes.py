"""The webhook path's part of entitlement notices (`billing/entitlement_notices.py`): after a
handler wrote billing state, in the delivery's transaction, whether the organization the
event is about is now entitled differently; the job is added after the commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sensor_billing.billing.entitlement_notices import (
    NoticeTarget,
    event_job_id,
    notice_changes,
    publish,
)
from sensor_billing.billing.entitlement_notices_repository import NoticeRow
from sensor_billing.billing.stripe_objects import checkout_organization_id, object_id
from sensor_billing.db.driver import Driver
from sensor_billing.webhooks.envelope import StripeEventEnvelope


def affected_organization(event: StripeEventEnvelope) -> tuple[uuid.UUID | None, str | None]:
    """(organization id, Stripe customer id): whichever names the organization whose
    entitlement the event can change. A checkout names the organization it links; a deleted
    customer is the event's object; subscriptions and invoices name their customer."""
    if event.type == "checkout.session.completed":
        return checkout_organization_id(event.object), None
    if event.type == "customer.deleted":
        return None, object_id(event.object.get("id"))
    return None, object_id(event.object.get("customer"))


@dataclass(frozen=True, slots=True)
class EntitlementNotifier:
    # A bullmq Queue on `billing-events`.
    queue: Any
    # The app's clock (`app.state.clock`), read at each delivery: tests move it.
    clock: Callable[[], datetime]
    grace: timedelta

    async def notice(self, connection: Driver, event: StripeEventEnvelope) -> NoticeRow | None:
        """The notice of one event applied alone, if its organization's entitlement changed."""
        notices = await self.notice_all(connection, [event])
        return notices[0] if notices else None

    async def notice_all(
        self, connection: Driver, events: Sequence[StripeEventEnvelope]
    ) -> list[NoticeRow]:
        """`notice` for the events of one group (`webhooks.groups`), each step one statement;
        `GroupConflict` when two of them are about one organization."""
        targets = [
            NoticeTarget(*affected_organization(event), event.id, event_job_id(event.id))
            for event in events
        ]
        return await notice_changes(connection, targets, now=self.clock(), grace=self.grace)

    async def publish_all(self, notices: Sequence[NoticeRow]) -> None:
        await publish(self.queue, notices)
