"""Creating and dropping throwaway PostgreSQL databases for tests."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.db import SessionFactory

P = ParamSpec("P")
R = TypeVar("R")


def run_in_thread(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run blocking code that starts its own event loop (Alembic's async env) off this thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args, **kwargs).result()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(admin_url: str, prefix: str) -> str:
    """Create an empty database named `<prefix>_<random>`; return its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"

    async def create() -> None:
        connection = await asyncpg.connect(_dsn(admin_url))
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database

    async def drop() -> None:
        connection = await asyncpg.connect(_dsn(admin_url))
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


EVERY_TABLE = text("""
SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables
 WHERE schemaname = 'public' AND tablename <> 'alembic_version'
""")


async def empty_tables(engine: AsyncEngine) -> None:
    """Every table of the test database emptied (the migrations' version kept)."""
    async with engine.begin() as connection:
        tables = (await connection.execute(EVERY_TABLE)).scalar_one()
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def fetch(url: str, sql: str) -> list[tuple[object, ...]]:
    """Run one query on its own connection and return the rows as tuples (blocking)."""

    async def query() -> list[tuple[object, ...]]:
        connection = await asyncpg.connect(_dsn(url))
        try:
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()

    return run_in_thread(asyncio.run, query())


TERMINATE_BACKENDS = text("""
SELECT count(pg_terminate_backend(pid))
  FROM pg_stat_activity
 WHERE application_name = :name AND datname = current_database()
""")


async def terminate_backends(sessions: SessionFactory, application_name: str) -> int:
    """End every connection of one process kind to the test database, as a PostgreSQL restart
    or an operator's `pg_terminate_backend` does; return how many."""
    async with sessions() as session, session.begin():
        return int(await session.scalar(TERMINATE_BACKENDS, {"name": application_name}) or 0)


ADVISORY_LOCKS_HELD = text("""
SELECT count(*) FROM pg_locks
 WHERE locktype = 'advisory' AND granted
   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
""")


async def advisory_locks_held(sessions: SessionFactory) -> int:
    """Advisory locks granted in the test database, by any session (the meter worker's
    (customer, meter) locks among them)."""
    async with sessions() as session:
        return int(await session.scalar(ADVISORY_LOCKS_HELD) or 0)
