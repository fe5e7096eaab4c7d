"""SQL for the Idempotency-Key store. Nothing here commits: the caller's unit of work does."""

from __future__ import annotations

import uuid
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


async def reserve(
    session: AsyncSession,
    *,
    key: str,
    service_key_id: uuid.UUID,
    method: str,
    path: str,
    parameters_sha256: bytes,
) -> None:
    """Bind the key to this request unless a live row has it; an expired one is taken over."""
    fresh: dict[str, Any] = {
        "service_key_id": service_key_id,
        "request_method": method,
        "request_path": path,
        "request_sha256": parameters_sha256,
    }
    statement = insert(IdempotencyKey).values(key=key, **fresh)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[IdempotencyKey.key],
            set_={
                **fresh,
                "stripe_key_generation": 0,
                "response_status": None,
                "response_body": None,
                "created_at": func.now(),
                "completed_at": None,
            },
            where=IdempotencyKey.created_at < func.now() - KEY_LIFETIME,
        )
    )
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


async def lock(session: AsyncSession, key: str) -> IdempotencyKey | None:
    """The key's row, locked until the transaction ends; None when another transaction holds
    it (a request with this key is running), instead of waiting for it."""
    try:
        row: IdempotencyKey | None = await session.scalar(
            select(IdempotencyKey).where(IdempotencyKey.key == key).with_for_update(nowait=True)
        )
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return None
        raise
    return row


def store_answer(row: IdempotencyKey, status: int, body: dict[str, Any]) -> None:
    row.response_status = status
    row.response_body = body
    row.completed_at = func.now()
