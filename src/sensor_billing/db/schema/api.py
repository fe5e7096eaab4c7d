"""The /v1 API's tables: the service keys that may call it, and the Idempotency-Key store.

A service key's secret is shown once, when it is made; only its SHA-256 digest is kept, so the
table is no use to whoever reads it. The secret carries 256 random bits: a slow password hash
would add nothing but a cost on every cache miss.

An Idempotency-Key row binds the key to its first request (method, path and a digest of the
body's parameters) and, once the endpoint has answered for good, holds that answer for 24 h.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sensor_billing.db.schema.base import Base

# Stripe's limit for its own Idempotency-Key (docs: api/idempotent_requests); ours keeps it.
IDEMPOTENCY_KEY_MAX_LENGTH = 255
SERVICE_KEY_NAME_MAX_LENGTH = 100


class ServiceKey(Base):
    __tablename__ = "service_keys"
    __table_args__ = (
        CheckConstraint(
            f"char_length(name) BETWEEN 1 AND {SERVICE_KEY_NAME_MAX_LENGTH}", name="name_length"
        ),
        CheckConstraint("octet_length(secret_sha256) = 32", name="secret_sha256_length"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    name: Mapped[str] = mapped_column(Text)
    secret_sha256: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    # The secret's last four characters, as Stripe shows a key's: enough to tell two keys
    # apart in a list, useless for guessing one.
    secret_last4: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Written at most about once a minute per key and API process, off the request's path.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        # Lookups expire rows older than 24 h; the prune that follows a new key reads this.
        Index(None, "created_at"),
        CheckConstraint(
            "(response_status IS NULL) = (response_body IS NULL)", name="response_complete"
        ),
    )

    # One namespace for the whole service, not one per service key: several keys exist so the
    # one backend can roll them, and a retry sent with the new key must find its answer.
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX_LENGTH), primary_key=True)
    service_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("service_keys.id", ondelete="SET NULL")
    )
    request_method: Mapped[str] = mapped_column(String(8))
    request_path: Mapped[str] = mapped_column(Text)
    request_sha256: Mapped[bytes] = mapped_column(LargeBinary)
    # Which Stripe idempotency keys the endpoint's calls use: moves on after Stripe answered a
    # 5xx, which Stripe keeps under its key and would replay to every retry for 24 h.
    stripe_key_generation: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
