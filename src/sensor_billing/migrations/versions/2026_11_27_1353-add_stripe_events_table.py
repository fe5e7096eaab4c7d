"""add_stripe_events_table: the webhook idempotency store of the seed plan

Produced by `alembic revision --autogenerate` and reviewed by hand: the table and unique index
match the seed's Drizzle definition (uuid id with a random default, varchar(256) event_id and
event_type, processed_at timestamptz(3) default now(), unique index stripe_events_event_id_idx).
gen_random_uuid() is built into PostgreSQL 13 and later.

Revision ID: 4255a795b001
Revises: 66baef239a16
Create Date: 2026-11-27 13:53:08.196865
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "4255a795b001"
down_revision: str | None = "66baef239a16"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("event_id", sa.String(length=256), nullable=False),
        sa.Column("event_type", sa.String(length=256), nullable=False),
        sa.Column(
            "processed_at",
            postgresql.TIMESTAMP(timezone=True, precision=3),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("stripe_events_pkey")),
    )
    op.create_index("stripe_events_event_id_idx", "stripe_events", ["event_id"], unique=True)


def downgrade() -> None:
    op.drop_index("stripe_events_event_id_idx", table_name="stripe_events")
    op.drop_table("stripe_events")
