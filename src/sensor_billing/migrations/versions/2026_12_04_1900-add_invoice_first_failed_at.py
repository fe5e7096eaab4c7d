"""add_invoice_first_failed_at: when an invoice's payment first failed

An organization whose subscription is past_due stays entitled for a grace period counted from
its first failed payment (billing/entitlement.py). Stripe does not order events, so the time is
the earliest `invoice.payment_failed` seen for the invoice, kept apart from the watermark.
Existing failed invoices start with their watermark's time, the best time known.

Revision ID: 3c8e1f6a9b27
Revises: 5a7d3e9b1c24
Create Date: 2026-12-04 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3c8e1f6a9b27"
down_revision: str | None = "5a7d3e9b1c24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "stripe_invoices", sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE stripe_invoices SET first_failed_at = last_event_created "
        "WHERE payment_status = 'payment_failed'"
    )


def downgrade() -> None:
    op.drop_column("stripe_invoices", "first_failed_at")
