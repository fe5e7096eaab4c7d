"""The baseline of `benchmarks.billing_read`: a bare FastAPI app whose one endpoint runs the very
statement of `GET /v1/organizations/{id}/billing` (the organization's standing and its prices,
`billing.standing_repository.BILLING_BY_ID_SQL`) straight on an asyncpg pool and returns the row
as JSON.

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

from benchmarks._support import dsn
from sensor_billing.billing.standing_repository import BILLING_BY_ID_SQL

POOL_SIZE = 20  # the API's default DATABASE_POOL_SIZE


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
    row = await request.app.state.pool.fetchrow(BILLING_BY_ID_SQL, organization_id)
    return {key: str(value) for key, value in dict(row).items()} if row else {}
