"""Shared fixtures: a throwaway PostgreSQL database migrated to head, and a clean Redis db.

Tests talk to real servers (127.0.0.1 by default; TEST_DATABASE_URL / TEST_REDIS_URL override).
Each test run gets its own database, created from scratch and dropped at the end; each test
starts with empty tables and an empty Redis database.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.db import SessionFactory, create_engine, create_session_factory, migrate
from sensor_billing.settings import use_fallback
from tests.support.databases import create_database, drop_database, empty_tables, run_in_thread

ADMIN_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _redis_url_for_this_worker(base: str) -> str:
    """Under pytest-xdist each worker empties its own Redis database: the base URL's database
    for gw0, the one below it for gw1, and so on (15, 14, ...)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw") or 0)
    prefix, _, database = base.rpartition("/")
    if index == 0:
        return base
    if not database.isdecimal() or int(database) < index:
        raise RuntimeError(f"TEST_REDIS_URL {base!r} leaves no Redis database for {worker}")
    return f"{prefix}/{int(database) - index}"


# pytest-xdist sets COLUMNS=80 in its workers; the CLI (rich) takes an explicit COLUMNS as the
# user's width, so its tables would be cut there and not in a serial run.
os.environ.pop("COLUMNS", None)

TEST_REDIS_URL = _redis_url_for_this_worker(
    os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = run_in_thread(create_database, ADMIN_DATABASE_URL, "sb_test")
    try:
        run_in_thread(migrate.upgrade, url)
        yield url
    finally:
        run_in_thread(drop_database, ADMIN_DATABASE_URL, url)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def sessions(engine: AsyncEngine) -> AsyncIterator[SessionFactory]:
    """A session factory on the test database; every table is emptied after the test."""
    yield create_session_factory(engine)
    await empty_tables(engine)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """A Redis database emptied before and after the test."""
    client = Redis.from_url(TEST_REDIS_URL)
    await client.flushdb()
    yield TEST_REDIS_URL
    await client.flushdb()
    await client.aclose()


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings are cached per process; tests that change the environment must not leak.
    Neither may the running-dev fallback a CLI run installs."""
    monkeypatch.chdir(os.path.dirname(__file__))  # no developer .env is read by accident
    use_fallback(None)
    yield
    use_fallback(None)
