"""Organizations (the billed customers), their sensors and the readings the sensors send."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from sensor_billing.db.schema.base import Base

# pg_current_xact_id() is an xid8, which has no cast to bigint; its text form is the number.
READING_XACT_ID = text("CAST(CAST(pg_current_xact_id() AS text) AS bigint)")


class SensorStatus(enum.StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    RETIRED = "retired"


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    name: Mapped[str] = mapped_column(Text)
    # Stripe customer ids are at most 255 characters (docs: api/customers/object).
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Created time of the webhook event that linked the customer: an older link (Stripe does
    # not order events) never undoes a newer one. A deletion does not move it: it is about the
    # customer it names, not about which customer is linked.
    stripe_customer_event_created: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stripe_customer_deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Sensor(Base):
    __tablename__ = "sensors"
    __table_args__ = (
        UniqueConstraint("organization_id", "serial"),
        # Target of the readings' composite foreign key: a reading can only name a sensor of
        # its own organization, so usage is never counted for the wrong customer.
        UniqueConstraint("organization_id", "id"),
        CheckConstraint("status IN ('active', 'inactive', 'retired')", name="status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    serial: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), server_default=SensorStatus.ACTIVE.value)
    # When the status took effect; set it with the status (else the trigger uses now()).
    status_changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class TemperatureReading(Base):
    __tablename__ = "temperature_readings"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "sensor_id"],
            ["sensors.organization_id", "sensors.id"],
            ondelete="CASCADE",
        ),
        # Per-window counting filters on received_at and groups by organization: this order
        # allows an index-only scan (~8 ms for one hour of 10M rows; the reverse order is not
        # used at all; docs: DESIGN.md "Metering").
        Index(None, "received_at", "organization_id"),
        # Readings of transactions the last close could not see have ids at least that close
        # snapshot's xmin: the newest entries (metering/repository.py, late commits).
        Index(
            "temperature_readings_xact_id_idx",
            "xact_id",
            postgresql_where=text("xact_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    # No foreign key of its own: the composite key to sensors implies the organization.
    organization_id: Mapped[uuid.UUID]
    sensor_id: Mapped[uuid.UUID]
    value_celsius: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # The inserting transaction (pg_current_xact_id), set by the database on every insert, so
    # the ingestion side's inserts stay as they are. A close tells by it which readings its
    # snapshot did not see (committed later): those are billed by the next close, by arrival.
    # NULL: committed before the column existed.
    xact_id: Mapped[int | None] = mapped_column(BigInteger, server_default=READING_XACT_ID)
