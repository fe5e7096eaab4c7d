"""Billing tables: the webhook idempotency store and the billing state webhooks keep current.

`stripe_events` is exactly the seed plan's table: Stripe retries a webhook for up to three days
and may deliver one event several times, so each processed event id is recorded once, under a
unique index, in the same transaction as its effects.

Subscriptions and invoices are mirrored per Stripe object, keyed by Stripe's id and linked to an
organization through the customer id. Stripe does not order events (docs: webhooks), so each
row keeps the `created` time of the event that last set it: an older event never overwrites it.
Keying by customer, not organization, keeps a subscription event that arrives before the
checkout that links its customer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP
from sqlalchemy.orm import Mapped, mapped_column

from sensor_billing.db.schema.base import Base

# Stripe ids are at most 255 characters (docs: api, "Object IDs").
StripeId = String(255)


class StripeEvent(Base):
    __tablename__ = "stripe_events"
    __table_args__ = (
        Index("stripe_events_event_id_idx", "event_id", unique=True),
        # The /ops webhook log (newest first) and its last-24-h counts; retention's prune.
        Index(None, "processed_at"),
        # The webhook log filtered by type, newest first.
        Index(None, "event_type", "processed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    event_id: Mapped[str] = mapped_column(String(256))
    event_type: Mapped[str] = mapped_column(String(256))
    processed_at: Mapped[datetime] = mapped_column(
        TIMESTAMP(timezone=True, precision=3), server_default=func.now()
    )


class StripeSubscription(Base):
    __tablename__ = "stripe_subscriptions"

    id: Mapped[str] = mapped_column(StripeId, primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(StripeId, index=True)
    status: Mapped[str] = mapped_column(String(32))
    current_period_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    current_period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    metered_price_ids: Mapped[list[str]] = mapped_column(
        ARRAY(StripeId), server_default=text("'{}'")
    )
    cancel_at_period_end: Mapped[bool] = mapped_column(server_default=text("false"))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_id: Mapped[str] = mapped_column(String(256))
    last_event_created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class StripePrice(Base):
    """A price as the subscription events that carry it describe it (each subscription item
    holds its full Price object; docs: api/subscription_items/object).

    Stripe never changes a price's amount, currency or meter (docs: api/prices/update takes
    none of them), so the first copy seen is the copy: rows are written once and never
    updated. `GET /v1/organizations/{id}/billing` reads them, so it never asks Stripe.
    """

    __tablename__ = "stripe_prices"

    id: Mapped[str] = mapped_column(StripeId, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    # Minor units, at most 12 decimal places (docs: api/prices/object, unit_amount_decimal);
    # None for a tiered price, which has no single unit amount.
    unit_amount_decimal: Mapped[Decimal | None] = mapped_column(Numeric(30, 12))
    # The Billing Meter it bills; None for a legacy metered price (usage records).
    meter_id: Mapped[str | None] = mapped_column(StripeId)
    # `stripe setup` names its prices by lookup key (setup.price_lookup_key): that is how the
    # meter event a price bills is known without asking Stripe for the meter.
    lookup_key: Mapped[str | None] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class StripeInvoice(Base):
    __tablename__ = "stripe_invoices"

    id: Mapped[str] = mapped_column(StripeId, primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(StripeId, index=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(StripeId)
    payment_status: Mapped[str] = mapped_column(String(32))
    amount_due: Mapped[int | None] = mapped_column(BigInteger)
    amount_paid: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    # The `created` time of the earliest `invoice.payment_failed` seen for this invoice, whatever
    # order the failures arrive in: an organization's past-due grace period counts from it.
    first_failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_id: Mapped[str] = mapped_column(String(256))
    last_event_created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class BillingStateChange(Base):
    """Append-only: one row for each change a webhook made to billing state, and why."""

    __tablename__ = "billing_state_changes"
    __table_args__ = (Index(None, "organization_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL")
    )
    stripe_object_id: Mapped[str] = mapped_column(StripeId, index=True)
    # Indexed for the /ops webhook log: what each event changed.
    event_id: Mapped[str] = mapped_column(String(256), index=True)
    event_type: Mapped[str] = mapped_column(String(256))
    change: Mapped[dict[str, object]] = mapped_column(JSONB)
    summary: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class EntitlementNotice(Base):
    """The outbox of the `billing-events` queue: one row per change of an organization's
    entitlement, written in the transaction that changed it; its `billing:entitlement-changed`
    job is added after the commit. The worker's sweep sets `enqueued_at` once it finds the job
    in the queue, or adds the job when that add was lost. The job id is `job_id`, so adding it
    twice adds one job."""

    __tablename__ = "entitlement_notices"
    __table_args__ = (
        # One notice per event and organization: a redelivered event adds none.
        UniqueConstraint("event_id", "organization_id"),
        Index(
            "entitlement_notices_unenqueued_idx",
            "created_at",
            postgresql_where=text("enqueued_at IS NULL"),
        ),
    )

    job_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    # The webhook event that made the change; None when time did (a grace period ended).
    event_id: Mapped[str | None] = mapped_column(String(256))
    entitled: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class NotifiedEntitlement(Base):
    """The entitlement each organization's last notice announced: what a change is measured
    against, and where the worker finds grace periods that ended with no webhook."""

    __tablename__ = "notified_entitlements"
    __table_args__ = (
        Index(
            "notified_entitlements_grace_until_idx",
            "until",
            postgresql_where=text("reason = 'past_due_grace'"),
        ),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    entitled: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    job_id: Mapped[str] = mapped_column(String(255))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
