"""SQL for the Idempotency-Key store. Nothing here commits: the caller's unit of work does."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.db.schema import IdempotencyKey

# Stripe keeps a key at least 24 h (docs: api/idempotent_requests); so does this service.
KEY_LIFETIME: Final = timedelta(hours=24)
# Expired rows deleted by each new reservation: a few at a time keeps every insert short,
# and many more than keys arrive, so the table never holds much more than a day of them.
PRUNE_BATCH: Final = 100
LOCK_NOT_AVAILABLE: Final = "55P03"


@dataclass(frozen=True, slots=True)
class Binding:
    """What a key is bound to: its first request (and the service key that sent it)."""

    service_key_id: uuid.UUID
    method: str
    path: str
    parameters_sha256: bytes


async def reserve(session: AsyncSession, key: str, binding: Binding) -> None:
    """Bind the key to this request unless a row has it already; prune expired rows first.

    `DO NOTHING`, not `DO UPDATE`: an upsert locks the row it conflicts with, so it would wait
    for a request still running with the key instead of letting `lock` refuse at once."""
    expired = (
        select(IdempotencyKey.key)
        .where(IdempotencyKey.created_at < func.now() - KEY_LIFETIME)
        .order_by(IdempotencyKey.created_at)
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.key.in_(expired.scalar_subquery()))
    )
    await session.execute(
        insert(IdempotencyKey)
        .values(
            key=key,
            service_key_id=binding.service_key_id,
            request_method=binding.method,
            request_path=binding.path,
            request_sha256=binding.parameters_sha256,
        )
        .on_conflict_do_nothing(index_elements=[IdempotencyKey.key])
    )


async def lock(session: AsyncSession, key: str) -> tuple[IdempotencyKey, bool] | None:
    """The key's row and whether it has expired, locked until the transaction ends; None when
    another transaction holds it (a request with this key is running), instead of waiting."""
    try:
        found = (
            await session.execute(
                select(IdempotencyKey, IdempotencyKey.created_at < func.now() - KEY_LIFETIME)
                .where(IdempotencyKey.key == key)
                .with_for_update(nowait=True, of=IdempotencyKey)
            )
        ).one_or_none()
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return None
        raise
    return None if found is None else (found[0], bool(found[1]))


def take_over(row: IdempotencyKey, binding: Binding) -> None:
    """Give an expired key to a new request, as if it had never been used."""
    row.service_key_id = binding.service_key_id
    row.request_method = binding.method
    row.request_path = binding.path
    row.request_sha256 = binding.parameters_sha256
    row.stripe_key_generation = 0
    row.response_status = None
    row.response_body = None
    row.created_at = func.now()
    row.completed_at = None


def store_answer(row: IdempotencyKey, status: int, body: dict[str, Any]) -> None:
    row.response_status = status
    row.response_body = body
    row.completed_at = func.now()
