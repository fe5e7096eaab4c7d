"""The async engine (asyncpg) and the session factory built on it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sensor_billing.db.pool import ReconnectingQueuePool
from sensor_billing.settings import to_asyncpg_url


def create_engine(
    database_url: str,
    *,
    pool_size: int = 20,
    max_overflow: int = 0,
    pool_timeout: float = 30.0,
    application_name: str = "sensor-billing",
) -> AsyncEngine:
    """An engine for a `postgres(ql)://` URL; the driver (asyncpg) is chosen here.

    A fixed pool with no overflow: overflow connections are closed when returned, so under
    steady load they would be opened again and again (a TCP and TLS handshake each). No
    pre-ping either: it costs a round trip per checkout; a connection the server killed is
    invalidated on its first error instead, and that one request or job is retried.

    `application_name` names the process in `pg_stat_activity`, so an operator (or a fault
    test) can tell the worker's connections from the API's before terminating them.

    The pool is `ReconnectingQueuePool`: with SQLAlchemy's own, requests waiting for a
    connection slept until `pool_timeout` when the connections being opened failed (see
    `db/pool.py`).
    """
    return create_async_engine(
        to_asyncpg_url(database_url),
        poolclass=ReconnectingQueuePool,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        connect_args={"server_settings": {"application_name": application_name}},
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after the unit of work commits.
    return async_sessionmaker(engine, expire_on_commit=False)
