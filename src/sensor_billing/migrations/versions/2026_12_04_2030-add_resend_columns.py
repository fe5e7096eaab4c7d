"""add_resend_columns: what `usage resend` needs of a ledger row

- `last_error_code`: Stripe's error code of the refusal that failed a row, so failed rows can
  be re-sent by code (`usage resend --code`, the /ops failures page). Rows failed before this
  migration have none (their `last_error` keeps Stripe's message).
- `replaced_by_id`: a sent row Stripe reported invalid is re-sent under a new identifier; the
  original points at the row that re-sends it, and reconciliation and corrections count that
  row instead.
- `stale_check_waived`: an operator compared a row with Stripe and re-sent it without the
  summaries check a row pending for over a day gets first (`--without-stripe-check`).

All three are instant on a large table (nullable, or a constant default). Written by hand;
autogenerate listed the same columns and foreign key.

Revision ID: 9b3f5c2e7a14
Revises: 7d41b6e2c9a0
Create Date: 2026-12-04 20:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9b3f5c2e7a14"
down_revision: str | None = "7d41b6e2c9a0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("meter_reports", sa.Column("last_error_code", sa.String(64), nullable=True))
    op.add_column("meter_reports", sa.Column("replaced_by_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        "meter_reports_replaced_by_id_fkey",
        "meter_reports",
        "meter_reports",
        ["replaced_by_id"],
        ["id"],
    )
    op.add_column(
        "meter_reports",
        sa.Column(
            "stale_check_waived", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_column("meter_reports", "stale_check_waived")
    op.drop_constraint("meter_reports_replaced_by_id_fkey", "meter_reports", type_="foreignkey")
    op.drop_column("meter_reports", "replaced_by_id")
    op.drop_column("meter_reports", "last_error_code")
