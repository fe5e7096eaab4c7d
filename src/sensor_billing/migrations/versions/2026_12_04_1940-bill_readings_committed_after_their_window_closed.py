"""bill_readings_committed_after_their_window_closed: late commits are billed by arrival

A reading's `received_at` defaults to its transaction's start, and a close counts what its
snapshot sees: a transaction open across a close committed readings into a window already
measured, and nothing billed them. Now every reading carries its transaction id (`xact_id`,
a default, so the ingestion side's inserts are unchanged), every cursor the snapshot of the
close that advanced it (`closed_snapshot`) and of the statement that created it
(`started_snapshot`), and the next close bills the readings the stored snapshot did not see,
counted in the row's `late_readings` (metering/repository.py, "Late commits").

Existing readings get no id (NULL: committed before this migration, which waits for every
transaction writing to the table); existing cursors get this migration's snapshot, so a
reading committed from now on is billed whatever its `received_at`. Readings committed late
before this migration stay as they were billed.

`xact_id` is added without a default first and the default set after: a volatile default in
ADD COLUMN would rewrite the whole table. `metering_cursors` is one row per organization, so
its rewrite is short. The partial index holds only new rows; on a large production table build
it first with CREATE INDEX CONCURRENTLY under the same name (IF NOT EXISTS then skips it).
Written by hand; autogenerate listed the same columns and index.

Revision ID: 7d41b6e2c9a0
Revises: 7d2b4f8e6a13
Create Date: 2026-12-04 19:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d41b6e2c9a0"
down_revision: str | None = "7d2b4f8e6a13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READING_XACT_ID = sa.text("CAST(CAST(pg_current_xact_id() AS text) AS bigint)")
CURRENT_SNAPSHOT = sa.text("CAST(pg_current_snapshot() AS text)")


def upgrade() -> None:
    op.add_column("temperature_readings", sa.Column("xact_id", sa.BigInteger(), nullable=True))
    op.alter_column("temperature_readings", "xact_id", server_default=READING_XACT_ID)
    op.create_index(
        "temperature_readings_xact_id_idx",
        "temperature_readings",
        ["xact_id"],
        postgresql_where=sa.text("xact_id IS NOT NULL"),
        if_not_exists=True,
    )
    for column in ("started_snapshot", "closed_snapshot"):
        op.add_column(
            "metering_cursors",
            sa.Column(column, sa.Text(), server_default=CURRENT_SNAPSHOT, nullable=False),
        )
    op.add_column(
        "meter_reports",
        sa.Column("late_readings", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("meter_reports", "late_readings")
    op.drop_column("metering_cursors", "closed_snapshot")
    op.drop_column("metering_cursors", "started_snapshot")
    op.drop_index("temperature_readings_xact_id_idx", table_name="temperature_readings")
    op.drop_column("temperature_readings", "xact_id")
