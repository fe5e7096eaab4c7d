"""add_ledger_corrections: cancelled status, correction source, corrects_id on meter_reports

Written by hand (then checked with `alembic check`): a correction row names the row it fixes
(`corrects_id`, with the operator's `correction_reason`); a sent row withdrawn through Stripe's
meter event adjustments becomes `cancelled`. Independent of other changes to meter_reports
(only these columns and the status/source checks are touched).

Revision ID: 5c0e7d2a4f13
Revises: 5d0c3e8a7b14
Create Date: 2026-11-27 16:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c0e7d2a4f13"
down_revision: str | None = "5d0c3e8a7b14"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "meter_reports"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("corrects_id", sa.BigInteger(), nullable=True))
    op.add_column(TABLE, sa.Column("correction_reason", sa.Text(), nullable=True))
    op.create_foreign_key(
        op.f("meter_reports_corrects_id_fkey"), TABLE, TABLE, ["corrects_id"], ["id"]
    )
    op.create_index(
        op.f("meter_reports_corrects_id_idx"),
        TABLE,
        ["corrects_id"],
        unique=False,
        postgresql_where=sa.text("corrects_id IS NOT NULL"),
    )
    op.drop_constraint(op.f("meter_reports_status_check"), TABLE, type_="check")
    op.create_check_constraint(
        op.f("meter_reports_status_check"),
        TABLE,
        "status IN ('pending', 'sent', 'failed', 'skipped', 'cancelled')",
    )
    op.drop_constraint(op.f("meter_reports_source_check"), TABLE, type_="check")
    op.create_check_constraint(
        op.f("meter_reports_source_check"), TABLE, "source IN ('window', 'job', 'correction')"
    )
    op.create_check_constraint(
        op.f("meter_reports_correction_target_check"),
        TABLE,
        "(source = 'correction') = (corrects_id IS NOT NULL)",
    )


def downgrade() -> None:
    # Corrections cannot be expressed in the old schema: refuse rather than lose them.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM meter_reports WHERE source = 'correction'"
        " OR status = 'cancelled') THEN RAISE EXCEPTION"
        " 'meter_reports holds corrections: downgrading would lose them'; END IF; END $$"
    )
    op.drop_constraint(op.f("meter_reports_correction_target_check"), TABLE, type_="check")
    op.drop_constraint(op.f("meter_reports_source_check"), TABLE, type_="check")
    op.create_check_constraint(
        op.f("meter_reports_source_check"), TABLE, "source IN ('window', 'job')"
    )
    op.drop_constraint(op.f("meter_reports_status_check"), TABLE, type_="check")
    op.create_check_constraint(
        op.f("meter_reports_status_check"),
        TABLE,
        "status IN ('pending', 'sent', 'failed', 'skipped')",
    )
    op.drop_index(
        op.f("meter_reports_corrects_id_idx"),
        table_name=TABLE,
        postgresql_where=sa.text("corrects_id IS NOT NULL"),
    )
    op.drop_constraint(op.f("meter_reports_corrects_id_fkey"), TABLE, type_="foreignkey")
    op.drop_column(TABLE, "correction_reason")
    op.drop_column(TABLE, "corrects_id")
