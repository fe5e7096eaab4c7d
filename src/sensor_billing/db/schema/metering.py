"""The usage ledger (outbox) and what window closing needs to count exactly.

`meter_reports` holds one row per organization, meter and closed window: the value measured,
the Stripe identifier derived from that key, and how far the report got. Rows are written when
a window closes and only then become jobs, so a crash between the two loses nothing (the sweep
enqueues pending rows again), and the identifier makes every resend harmless to Stripe.
"""

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
    Identity,
    Index,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from sensor_billing.db.schema.base import Base

# The inserting statement's snapshot (its active snapshot), as text.
CURRENT_SNAPSHOT = text("CAST(pg_current_snapshot() AS text)")


class ReportStatus(enum.StrEnum):
    PENDING = "pending"  # measured, not yet accepted by Stripe
    SENT = "sent"  # accepted by Stripe (or Stripe already had this identifier)
    FAILED = "failed"  # Stripe refused it for good; waits for a person
    SKIPPED = "skipped"  # deliberately not sent; skip_reason says why
    # Sent, then withdrawn through a meter event adjustment (type=cancel) within Stripe's 24 h;
    # a replacement row (corrects_id = this row's id) carries the right value. Never resent.
    CANCELLED = "cancelled"


class ReportSource(enum.StrEnum):
    WINDOW = "window"  # measured by close_windows
    JOB = "job"  # a meter:report job added by another producer
    # An operator's correction of a sent row (`usage correct`): a replacement after a cancel,
    # or a compensating event in a later window. `corrects_id` names the row it fixes.
    CORRECTION = "correction"


class MeterReport(Base):
    __tablename__ = "meter_reports"
    __table_args__ = (
        # The ledger key: one report per organization, meter and window.
        Index(
            "meter_reports_window_key",
            "organization_id",
            "event_name",
            "window_start",
            unique=True,
            postgresql_where=text("source = 'window'"),
        ),
        # Pending rows oldest first, in the (created_at, id) order the stream's batches and
        # the sweep's pages read them: a close writes all its rows with one created_at, so an
        # index on created_at alone made every batch sort the whole backlog.
        Index(
            "meter_reports_pending_idx",
            "created_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(None, "organization_id", "window_start"),
        # Rows Stripe reported invalid after accepting them: the /metrics gauge counts these.
        Index(
            "meter_reports_stripe_error_idx",
            "stripe_error_code",
            postgresql_where=text("stripe_error_code IS NOT NULL"),
        ),
        # The /ops pages: reports of windows closed in the last 24 h, and failed rows newest
        # first (few, so a small partial index).
        Index(None, "created_at"),
        Index("meter_reports_failed_idx", "id", postgresql_where=text("status = 'failed'")),
        CheckConstraint(
            "event_name IN ('active_sensors', 'temperature_readings')", name="event_name"
        ),
        CheckConstraint(
            "status IN ('pending', 'sent', 'failed', 'skipped', 'cancelled')", name="status"
        ),
        CheckConstraint("source IN ('window', 'job', 'correction')", name="source"),
        # A correction always names the row it fixes; nothing else does.
        CheckConstraint(
            "(source = 'correction') = (corrects_id IS NOT NULL)", name="correction_target"
        ),
        Index(None, "corrects_id", postgresql_where=text("corrects_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    event_name: Mapped[str] = mapped_column(String(32))
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    value: Mapped[int] = mapped_column(BigInteger)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    # Stripe meter event identifier (at most 100 characters) and the bullmq job id.
    identifier: Mapped[str] = mapped_column(String(100), unique=True)
    source: Mapped[str] = mapped_column(String(16), server_default=ReportSource.WINDOW.value)
    status: Mapped[str] = mapped_column(String(16), server_default=ReportStatus.PENDING.value)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    # Which idempotency key the next send uses (stripe_api.meter_events.idempotency_key): moved
    # on when Stripe answered a 5xx, which it keeps under the key and would replay for 24 h.
    key_generation: Mapped[int] = mapped_column(server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    # Stripe's error code of the refusal that failed the row (`usage resend --code`).
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    # Of `value`, the readings whose transaction committed after the window of their
    # `received_at` had been closed: billed in this window, by arrival.
    late_readings: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Stripe's asynchronous verdict on a sent row (a thin meter error event named its
    # identifier): the usage did not count in Stripe. Set by the newest such event.
    stripe_error_code: Mapped[str | None] = mapped_column(String(64))
    stripe_error_message: Mapped[str | None] = mapped_column(Text)
    stripe_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stripe_error_event_id: Mapped[str | None] = mapped_column(String(256))
    # The row a correction fixes (always the original window or job row, never another
    # correction), and the operator's reason.
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("meter_reports.id"))
    correction_reason: Mapped[str | None] = mapped_column(Text)
    # A sent row Stripe reported invalid, re-sent under a new identifier (`usage resend`):
    # the row that re-sends it. Reconciliation and corrections count that row instead.
    replaced_by_id: Mapped[int | None] = mapped_column(ForeignKey("meter_reports.id"))
    # Set by `usage resend --without-stripe-check`: an operator compared the row with Stripe
    # and wants it sent without the check a row pending for over a day gets first.
    stale_check_waived: Mapped[bool] = mapped_column(server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class MeterErrorReport(Base):
    """What one thin meter error event (v1.billing.meter.error_report_triggered or
    .no_meter_found) said, per error code and organization.

    Stripe names at most a few sample identifiers per error code; the organizations of the
    ledger rows they name get a row each (`error_count` = their samples), and the errors it did
    not sample get one row without an organization, so the counts of an event add up to
    Stripe's `reason.error_count`. Written once per event, in the transaction that records the
    event in `stripe_events`.
    """

    __tablename__ = "meter_error_reports"
    __table_args__ = (
        Index(None, "organization_id", "event_created_at"),
        # The /ops overview's last 24 h and `usage errors` without --org, newest first.
        Index(None, "event_created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    stripe_event_id: Mapped[str] = mapped_column(String(256), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(64))
    error_count: Mapped[int]
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    meter_id: Mapped[str | None] = mapped_column(String(255))
    sample_message: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    validation_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    validation_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    event_created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class MeteringCursor(Base):
    """How far usage has been closed for an organization: every window ending at or before
    `closed_through` has its ledger rows."""

    __tablename__ = "metering_cursors"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    closed_through: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # pg_snapshot text of the statement that created the cursor: readings it saw with a
    # received_at before the cursor's start are the organization's history before metering
    # began (only backfill bills them); readings committed later are the closes' to bill.
    started_snapshot: Mapped[str] = mapped_column(Text, server_default=CURRENT_SNAPSHOT)
    # pg_snapshot text of the close that set `closed_through`: the next close bills the
    # readings received before `closed_through` that this snapshot did not see (late commits).
    closed_snapshot: Mapped[str] = mapped_column(Text, server_default=CURRENT_SNAPSHOT)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class SensorStatusPeriod(Base):
    """A sensor's status over time, kept by a trigger on `sensors` (see the migration), so the
    active sensors at the close of a past window can be counted when it is caught up late."""

    __tablename__ = "sensor_status_periods"
    __table_args__ = (Index(None, "organization_id", "valid_from"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    sensor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sensors.id", ondelete="CASCADE"))
    organization_id: Mapped[uuid.UUID]
    status: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReconcileOutcome(enum.StrEnum):
    NO_DRIFT = "no_drift"
    DRIFT = "drift"
    FAILED = "failed"  # Stripe or the meters could not be read: `error` says why


class ReconciliationRun(Base):
    """One run of the worker's daily checks (jobs/worker.py, once a day on one replica): the
    previous UTC day reconciled against Stripe's hourly meter summaries, and the webhook
    events and entitlement notices pruned. The /ops overview and the metrics show the
    newest."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (
        Index(None, "finished_at"),
        CheckConstraint("outcome IN ('no_drift', 'drift', 'failed')", name="outcome"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(16))
    hours_compared: Mapped[int] = mapped_column(server_default=text("0"))
    hours_with_drift: Mapped[int] = mapped_column(server_default=text("0"))
    hours_unsent: Mapped[int] = mapped_column(server_default=text("0"))
    organizations_with_drift: Mapped[int] = mapped_column(server_default=text("0"))
    # Stripe's total minus the ledger's for `temperature_readings` over the day, every
    # organization (a counter; `active_sensors` drift is in the hours).
    readings_drift: Mapped[Decimal] = mapped_column(Numeric, server_default=text("0"))
    events_pruned: Mapped[int] = mapped_column(server_default=text("0"))
    notices_pruned: Mapped[int] = mapped_column(server_default=text("0"))
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
