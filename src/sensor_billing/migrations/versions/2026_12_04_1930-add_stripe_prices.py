"""add_stripe_prices: the prices subscriptions bill, as their events carry them

`GET /v1/organizations/{id}/billing` answers with the subscription's metered prices (amount,
currency, the meter event they bill) without asking Stripe: each subscription event holds its
items' full Price objects, and a price's amount, currency and meter never change. Prices of
subscriptions recorded before this table are filled by their subscription's next event.

Revision ID: 7d2b4f8e6a13
Revises: ed2a1233314b
Create Date: 2026-12-04 19:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d2b4f8e6a13"
down_revision: str | None = "ed2a1233314b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stripe_prices",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("unit_amount_decimal", sa.Numeric(precision=30, scale=12), nullable=True),
        sa.Column("meter_id", sa.String(length=255), nullable=True),
        sa.Column("lookup_key", sa.String(length=200), nullable=True),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("stripe_prices_pkey")),
    )


def downgrade() -> None:
    op.drop_table("stripe_prices")
