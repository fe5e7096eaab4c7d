"""Service keys: made, listed and revoked by an operator; presented by the SaaS backend.

A key is `sbk_` and 32 random bytes (URL-safe base64), shown once when it is made. Only its
SHA-256 digest is stored. Several keys can be active at once, so a key is rolled without
downtime: make the new one, deploy it, revoke the old one (docs/api.md "Rolling a key").
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import ServiceKey
from sensor_billing.db.schema.api import SERVICE_KEY_NAME_MAX_LENGTH
from sensor_billing.errors import InvalidInputError
from sensor_billing.service_keys import repository

SERVICE_KEY_PREFIX: Final = "sbk_"
# 256 bits: far beyond guessing, so a fast hash (SHA-256) is enough to store it.
SECRET_BYTES: Final = 32


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True, slots=True)
class IssuedServiceKey:
    """A new key, with the only copy of its secret."""

    id: uuid.UUID
    name: str
    secret: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ServiceKeyInfo:
    id: uuid.UUID
    name: str
    last4: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ServiceKey) -> ServiceKeyInfo:
        return cls(
            row.id, row.name, row.secret_last4, row.created_at, row.last_used_at, row.revoked_at
        )

    @property
    def masked(self) -> str:
        return f"{SERVICE_KEY_PREFIX}...{self.last4}"

    def to_json(self) -> dict[str, Any]:
        def moment(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "id": str(self.id),
            "name": self.name,
            "key": self.masked,
            "created_at": self.created_at.isoformat(),
            "last_used_at": moment(self.last_used_at),
            "revoked_at": moment(self.revoked_at),
        }


def checked_name(name: str) -> str:
    cleaned = name.strip()
    if not 1 <= len(cleaned) <= SERVICE_KEY_NAME_MAX_LENGTH:
        raise InvalidInputError(
            f"--name must be 1 to {SERVICE_KEY_NAME_MAX_LENGTH} characters (not only spaces)"
        )
    return cleaned


async def create_service_key(session: AsyncSession, name: str) -> IssuedServiceKey:
    secret = SERVICE_KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    row = await repository.add(
        session, name=checked_name(name), secret_sha256=secret_digest(secret), last4=secret[-4:]
    )
    return IssuedServiceKey(row.id, row.name, secret, row.created_at)


async def issue_service_key(sessions: SessionFactory, name: str) -> str:
    """Make a key in its own transaction and return its secret (for `dev --demo` and scripts)."""
    async with unit_of_work(sessions) as session:
        issued = await create_service_key(session, name)
    return issued.secret


async def list_service_keys(
    session: AsyncSession, *, include_revoked: bool = True
) -> list[ServiceKeyInfo]:
    rows = await repository.all_keys(session, include_revoked=include_revoked)
    return [ServiceKeyInfo.of(row) for row in rows]


@dataclass(frozen=True, slots=True)
class Revocation:
    key: ServiceKeyInfo
    already_revoked: bool


async def revoke_service_key(session: AsyncSession, key_id: uuid.UUID) -> Revocation:
    """Revoke the key (for good). API processes refuse it once their cache of verified keys
    lets go of it, within `verifier.VERIFIED_KEY_CACHE_SECONDS`."""
    row = await repository.get_for_update(session, key_id)
    if row is None:
        raise InvalidInputError(f"no service key with id {key_id} (see `sensor-billing keys list`)")
    if row.revoked_at is not None:
        return Revocation(ServiceKeyInfo.of(row), already_revoked=True)
    await repository.mark_revoked(session, row)
    return Revocation(ServiceKeyInfo.of(row), already_revoked=False)
