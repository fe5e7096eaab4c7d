"""add_reconciliation_runs: what the worker's daily checks found

Once a day, on one worker replica (a bullmq job scheduler), the worker reconciles the previous
UTC day against Stripe's hourly meter summaries and prunes old webhook events; each run is a
row here, and the /ops overview and the metrics show the newest. Written by hand;
autogenerate listed the same table and index.

Revision ID: 2e6a9d4b8c31
Revises: 9b3f5c2e7a14
Create Date: 2026-12-04 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2e6a9d4b8c31"
down_revision: str | None = "9b3f5c2e7a14"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ZERO = sa.text("0")


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("hours_compared", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("hours_with_drift", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("hours_unsent", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("organizations_with_drift", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("readings_drift", sa.Numeric(), server_default=ZERO, nullable=False),
        sa.Column("events_pruned", sa.Integer(), server_default=ZERO, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("job_id", sa.String(255), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('no_drift', 'drift', 'failed')",
            name=op.f("reconciliation_runs_outcome_check"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("reconciliation_runs_pkey")),
    )
    op.create_index(
        op.f("reconciliation_runs_finished_at_idx"), "reconciliation_runs", ["finished_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("reconciliation_runs_finished_at_idx"), table_name="reconciliation_runs")
    op.drop_table("reconciliation_runs")
