"""SQL for service keys. Nothing here commits: the caller's unit of work does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.db.schema import ServiceKey


async def add(session: AsyncSession, *, name: str, secret_sha256: bytes, last4: str) -> ServiceKey:
    row = ServiceKey(name=name, secret_sha256=secret_sha256, secret_last4=last4)
    session.add(row)
    await session.flush()
    await session.refresh(row)  # created_at, set by the database
    return row


async def find_by_digest(session: AsyncSession, secret_sha256: bytes) -> ServiceKey | None:
    return await session.scalar(select(ServiceKey).where(ServiceKey.secret_sha256 == secret_sha256))


async def all_keys(session: AsyncSession, *, include_revoked: bool) -> Sequence[ServiceKey]:
    query = select(ServiceKey).order_by(ServiceKey.created_at, ServiceKey.id)
    if not include_revoked:
        query = query.where(ServiceKey.revoked_at.is_(None))
    return (await session.scalars(query)).all()


async def get_for_update(session: AsyncSession, key_id: uuid.UUID) -> ServiceKey | None:
    return await session.scalar(select(ServiceKey).where(ServiceKey.id == key_id).with_for_update())


async def mark_revoked(session: AsyncSession, row: ServiceKey) -> None:
    row.revoked_at = func.now()  # the database's clock, as for created_at
    await session.flush()
    await session.refresh(row, ["revoked_at"])


async def touch(session: AsyncSession, key_id: uuid.UUID) -> None:
    await session.execute(
        update(ServiceKey).where(ServiceKey.id == key_id).values(last_used_at=func.now())
    )
