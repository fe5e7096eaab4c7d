"""add_ops_indexes: indexes behind the /ops pages

The overview counts ledger rows of windows closed in the last 24 h (meter_reports.created_at)
and failed rows (a partial index, as failed rows are few); the webhook log reads stripe_events
newest first (processed_at) and what each event changed (billing_state_changes.event_id).
Measured with benchmarks/ops_pages.py on 1,000,000 ledger rows. Written by hand after
autogenerate listed the same four indexes.

Plain CREATE INDEX takes a lock that blocks writes to the table while it builds (seconds on
millions of rows). On a large production table, create them beforehand with
CREATE INDEX CONCURRENTLY under the same names; IF NOT EXISTS then makes this a no-op.

Revision ID: 4c29ca0a6d42
Revises: 5c0e7d2a4f13
Create Date: 2026-11-27 16:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4c29ca0a6d42"
down_revision: str | None = "5c0e7d2a4f13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "meter_reports_created_at_idx", "meter_reports", ["created_at"], if_not_exists=True
    )
    op.create_index(
        "meter_reports_failed_idx",
        "meter_reports",
        ["id"],
        postgresql_where=sa.text("status = 'failed'"),
        if_not_exists=True,
    )
    op.create_index(
        "stripe_events_processed_at_idx", "stripe_events", ["processed_at"], if_not_exists=True
    )
    op.create_index(
        "billing_state_changes_event_id_idx",
        "billing_state_changes",
        ["event_id"],
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("billing_state_changes_event_id_idx", table_name="billing_state_changes")
    op.drop_index("stripe_events_processed_at_idx", table_name="stripe_events")
    op.drop_index("meter_reports_failed_idx", table_name="meter_reports")
    op.drop_index("meter_reports_created_at_idx", table_name="meter_reports")
