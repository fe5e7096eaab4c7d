"""add_entitlement_notices: the outbox of `billing:entitlement-changed` jobs

`entitlement_notices` holds one row per change of an organization's entitlement (written in
the transaction that changed it, its job added to the `billing-events` queue after the commit);
`notified_entitlements` the entitlement each organization's last notice announced, which a
change is measured against and where the worker finds grace periods that ended. Written by
hand; autogenerate listed the same tables, constraints and indexes.

Revision ID: 5c8e1f3a7b92
Revises: 2e6a9d4b8c31
Create Date: 2026-12-06 22:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c8e1f3a7b92"
down_revision: str | None = "2e6a9d4b8c31"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "entitlement_notices",
        sa.Column("job_id", sa.String(255), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.String(256), nullable=True),
        sa.Column("entitled", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("entitlement_notices_organization_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("entitlement_notices_pkey")),
        sa.UniqueConstraint(
            "event_id",
            "organization_id",
            name=op.f("entitlement_notices_event_id_organization_id_key"),
        ),
    )
    op.create_index(
        op.f("entitlement_notices_organization_id_idx"), "entitlement_notices", ["organization_id"]
    )
    op.create_index(
        "entitlement_notices_unenqueued_idx",
        "entitlement_notices",
        ["created_at"],
        postgresql_where=sa.text("enqueued_at IS NULL"),
    )
    op.create_table(
        "notified_entitlements",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("entitled", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("job_id", sa.String(255), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("notified_entitlements_organization_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("notified_entitlements_pkey")),
    )
    op.create_index(
        "notified_entitlements_grace_until_idx",
        "notified_entitlements",
        ["until"],
        postgresql_where=sa.text("reason = 'past_due_grace'"),
    )


def downgrade() -> None:
    op.drop_index("notified_entitlements_grace_until_idx", table_name="notified_entitlements")
    op.drop_table("notified_entitlements")
    op.drop_index("entitlement_notices_unenqueued_idx", table_name="entitlement_notices")
    op.drop_index(op.f("entitlement_notices_organization_id_idx"), table_name="entitlement_notices")
    op.drop_table("entitlement_notices")
