"""create tenancy tables: organizations, sensors, temperature_readings

Revision ID: 66baef239a16
Revises:
Create Date: 2026-11-27 13:52:52.892541
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "66baef239a16"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("organizations_pkey")),
        sa.UniqueConstraint(
            "stripe_customer_id", name=op.f("organizations_stripe_customer_id_key")
        ),
    )
    op.create_table(
        "sensors",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("serial", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('active', 'inactive', 'retired')", name=op.f("sensors_status_check")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("sensors_organization_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("sensors_pkey")),
        sa.UniqueConstraint("organization_id", "id", name=op.f("sensors_organization_id_id_key")),
        sa.UniqueConstraint(
            "organization_id", "serial", name=op.f("sensors_organization_id_serial_key")
        ),
    )
    op.create_table(
        "temperature_readings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("sensor_id", sa.Uuid(), nullable=False),
        sa.Column("value_celsius", sa.Numeric(precision=6, scale=2), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        # A reading can only name a sensor of its own organization.
        sa.ForeignKeyConstraint(
            ["organization_id", "sensor_id"],
            ["sensors.organization_id", "sensors.id"],
            name=op.f("temperature_readings_organization_id_sensor_id_fkey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("temperature_readings_pkey")),
    )
    op.create_index(
        op.f("temperature_readings_received_at_organization_id_idx"),
        "temperature_readings",
        ["received_at", "organization_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("temperature_readings_received_at_organization_id_idx"),
        table_name="temperature_readings",
    )
    op.drop_table("temperature_readings")
    op.drop_table("sensors")
    op.drop_table("organizations")
