"""The baseline of `benchmarks.billing_read`: a bare FastAPI app whose one endpoint runs the same
one-row select as `GET /v1/organizations/{id}/billing` (the organization's standing,
`billing.standing_repository`) straight on an asyncpg pool and returns the row as JSON.

    DATABASE_URL=... .venv/bin/python -m uvicorn benchmarks.bare_billing_app:app --port 8001

No settings, no SQLAlchemy session, no entitlement policy, no response model, no auth: what is
left is FastAPI, uvicorn and the database round trip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from sqlalchemy import literal_column
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from benchmarks._support import dsn
from sensor_billing.billing.standing_repository import standing_query
from sensor_billing.db.schema import Organization

POOL_SIZE = 20  # the API's default DATABASE_POOL_SIZE


def standing_sql() -> str:
    """The API's statement with its constants (the status ranks) written in and $1 for the
    organization's id."""
    query = standing_query().where(Organization.id == literal_column("$1::uuid"))
    dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]  # unannotated in SQLAlchemy
    return str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


STANDING_SQL = standing_sql()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(
        dsn(os.environ["DATABASE_URL"]), min_size=POOL_SIZE, max_size=POOL_SIZE
    )
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/bare/organizations/{organization_id}/billing")
async def organization_billing(request: Request, organization_id: uuid.UUID) -> dict[str, Any]:
    row = await request.app.state.pool.fetchrow(STANDING_SQL, organization_id)
    return {key: str(value) for key, value in dict(row).items()} if row else {}
