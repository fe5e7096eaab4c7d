"""Does PostgreSQL answer? Used at start-up and by `status` / `/readyz`."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from sensor_billing.errors import DatabaseUnavailableError
from sensor_billing.settings import to_asyncpg_url

CONNECT_TIMEOUT_SECONDS = 5.0


async def ping_database(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def database_problem_async(database_url: str) -> str | None:
    """None when the database answers, else a one-line reason (never the password)."""
    engine = create_async_engine(
        to_asyncpg_url(database_url),
        poolclass=NullPool,
        connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
    )
    try:
        await ping_database(engine)
    except (OSError, TimeoutError) as error:
        return f"cannot connect ({type(error).__name__}: {error})"
    except Exception as error:  # asyncpg raises many types; all mean "not usable"
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    finally:
        await engine.dispose()
    return None


def database_problem(database_url: str) -> str | None:
    return asyncio.run(database_problem_async(database_url))


def require_database(database_url: str) -> None:
    problem = database_problem(database_url)
    if problem:
        raise DatabaseUnavailableError(
            f"PostgreSQL at DATABASE_URL does not answer: {problem}. "
            "Start it, or point DATABASE_URL at a running server."
        )
