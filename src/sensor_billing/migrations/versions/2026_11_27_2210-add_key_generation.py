"""add_key_generation: which idempotency key a ledger row's next send uses

Written by hand (then checked with `alembic check`). Stripe keeps a 500 under its idempotency
key and answers every retry with the same key with it for 24 h; a row's key moves on after
such an answer. Existing rows start at 0, the key they have always used.

Revision ID: 7b3e51d09a2c
Revises: 4c29ca0a6d42
Create Date: 2026-11-27 22:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7b3e51d09a2c"
down_revision: str | None = "4c29ca0a6d42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "meter_reports",
        sa.Column("key_generation", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("meter_reports", "key_generation")
