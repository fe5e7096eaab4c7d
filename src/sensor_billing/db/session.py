"""The unit of work: one transaction per request or job.

Services and repositories only `flush()`; the wrapper that opened the unit of work commits on
success and rolls back on any error, so a failure never leaves half a change behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

SessionFactory = async_sessionmaker[AsyncSession]


@asynccontextmanager
async def unit_of_work(sessions: SessionFactory) -> AsyncIterator[AsyncSession]:
    """Yield a session inside a transaction; commit if the block succeeds, else roll back."""
    async with sessions() as session, session.begin():
        yield session


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """The pool's asyncpg connection itself, for a hot read that is one statement (its own
    transaction, no BEGIN or COMMIT). Going around SQLAlchemy's execution layer cut such a
    read from about 500 to 170 us of CPU (benchmarks/billing_read.py). Never for writes."""
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        yield raw.driver_connection
