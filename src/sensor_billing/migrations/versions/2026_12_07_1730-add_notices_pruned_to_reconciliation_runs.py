"""add_notices_pruned_to_reconciliation_runs: the entitlement notices a daily check pruned

The worker's daily checks now prune, beside the webhook events, the entitlement notices whose
job was added more than 30 days ago; `notices_pruned` counts them per run. Instant on a large
table (a constant default); runs before this have 0. Written by hand; autogenerate listed the
same column.

Revision ID: a4824d054593
Revises: 5c8e1f3a7b92
Create Date: 2026-12-07 17:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a4824d054593"
down_revision: str | None = "5c8e1f3a7b92"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "reconciliation_runs",
        sa.Column("notices_pruned", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("reconciliation_runs", "notices_pruned")
