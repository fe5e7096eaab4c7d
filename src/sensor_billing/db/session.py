"""The unit of work: one transaction per request or job.

Services and repositories only `flush()`; the wrapper that opened the unit of work commits on
success and rolls back on any error, so a failure never leaves half a change behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

SessionFactory = async_sessionmaker[AsyncSession]


@asynccontextmanager
async def unit_of_work(sessions: SessionFactory) -> AsyncIterator[AsyncSession]:
    """Yield a session inside a transaction; commit if the block succeeds, else roll back."""
    async with sessions() as session, session.begin():
        yield session


@asynccontextmanager
async def single_statement(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in autocommit, for a read that is one statement (its own transaction):
    it saves the BEGIN and COMMIT round trips a unit of work costs, a fifth of a hot read's
    time (benchmarks/billing_read.py). Never for writes, nor for reads that must agree."""
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection
