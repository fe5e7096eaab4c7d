"""add_error_and_webhook_type_indexes: Stripe's meter errors by time, the webhook log by type

The /ops overview now counts the meter error reports of the last 24 h, and `usage errors`
without --org lists them newest first: meter_error_reports (event_created_at). The webhook
log filtered by type read stripe_events newest first through the processed_at index and
skipped every event of another type: stripe_events (event_type, processed_at) starts the scan
at the type. Written by hand after autogenerate listed the same two indexes.

As in add_ops_indexes: on a large production table create them beforehand with
CREATE INDEX CONCURRENTLY under the same names; IF NOT EXISTS then makes this a no-op.

Revision ID: 9e4b7c1d2a58
Revises: 3d8a6f2c1e07
Create Date: 2026-11-28 00:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "9e4b7c1d2a58"
down_revision: str | None = "3d8a6f2c1e07"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "meter_error_reports_event_created_at_idx",
        "meter_error_reports",
        ["event_created_at"],
        if_not_exists=True,
    )
    op.create_index(
        "stripe_events_event_type_processed_at_idx",
        "stripe_events",
        ["event_type", "processed_at"],
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("stripe_events_event_type_processed_at_idx", table_name="stripe_events")
    op.drop_index("meter_error_reports_event_created_at_idx", table_name="meter_error_reports")
