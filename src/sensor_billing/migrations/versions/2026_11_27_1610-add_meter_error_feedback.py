"""add_meter_error_feedback: Stripe's meter error verdicts on ledger rows, and the reports

Written by hand after the models (autogenerate's output, checked by `alembic check` in the
tests): four nullable columns on meter_reports with a partial index on the error code, and the
meter_error_reports table. Adding nullable columns without defaults does not rewrite
meter_reports.

Revision ID: 5d0c3e8a7b14
Revises: 9f21ce2b5a66
Create Date: 2026-11-27 16:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d0c3e8a7b14"
down_revision: str | None = "9f21ce2b5a66"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("meter_reports", sa.Column("stripe_error_code", sa.String(length=64)))
    op.add_column("meter_reports", sa.Column("stripe_error_message", sa.Text()))
    op.add_column("meter_reports", sa.Column("stripe_error_at", sa.DateTime(timezone=True)))
    op.add_column("meter_reports", sa.Column("stripe_error_event_id", sa.String(length=256)))
    op.create_index(
        "meter_reports_stripe_error_idx",
        "meter_reports",
        ["stripe_error_code"],
        unique=False,
        postgresql_where=sa.text("stripe_error_code IS NOT NULL"),
    )
    op.create_table(
        "meter_error_reports",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("stripe_event_id", sa.String(length=256), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=True),
        sa.Column("meter_id", sa.String(length=255), nullable=True),
        sa.Column("sample_message", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("validation_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("validation_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("meter_error_reports_organization_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("meter_error_reports_pkey")),
    )
    op.create_index(
        op.f("meter_error_reports_organization_id_event_created_at_idx"),
        "meter_error_reports",
        ["organization_id", "event_created_at"],
        unique=False,
    )
    op.create_index(
        op.f("meter_error_reports_stripe_event_id_idx"),
        "meter_error_reports",
        ["stripe_event_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("meter_error_reports_stripe_event_id_idx"), table_name="meter_error_reports")
    op.drop_index(
        op.f("meter_error_reports_organization_id_event_created_at_idx"),
        table_name="meter_error_reports",
    )
    op.drop_table("meter_error_reports")
    op.drop_index(
        "meter_reports_stripe_error_idx",
        table_name="meter_reports",
        postgresql_where=sa.text("stripe_error_code IS NOT NULL"),
    )
    op.drop_column("meter_reports", "stripe_error_event_id")
    op.drop_column("meter_reports", "stripe_error_at")
    op.drop_column("meter_reports", "stripe_error_message")
    op.drop_column("meter_reports", "stripe_error_code")
