"""Billing tables: the webhook idempotency store.

`stripe_events` is exactly the seed plan's table: Stripe retries a webhook for up to three days
and may deliver one event several times, so each processed event id is recorded once, under a
unique index, in the same transaction as its effects.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, String, func, text
from sqlalchemy.dialects.postgresql import TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from sensor_billing.db.schema.base import Base


class StripeEvent(Base):
    __tablename__ = "stripe_events"
    __table_args__ = (Index("stripe_events_event_id_idx", "event_id", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    event_id: Mapped[str] = mapped_column(String(256))
    event_type: Mapped[str] = mapped_column(String(256))
    processed_at: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True, precision=3), server_default=func.now()
    )
