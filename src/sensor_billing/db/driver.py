"""Core statements run straight on the driver (asyncpg), for the webhook hot path.

SQLAlchemy's execution costs more CPU than the statement's round trip: measured per call in
one API process, about 100 us through `AsyncConnection.execute` and 140 us through
`AsyncSession.execute`, against 25 us for the same statement on asyncpg; an `AsyncSession`
unit of work adds about 110 us more. A handled webhook runs five statements in one
transaction, so those layers were most of its CPU. Statements are still written in Core
(schema-bound, checked by the tests); `DriverStatement` compiles one once, and the unit of
work here is one asyncpg transaction on a connection of the engine's pool.

SQLAlchemy does not see what happens on the driver, so it cannot tell a connection the server
ended from a live one: any failure inside `pooled_driver` invalidates the connection, or the
pool would hand out the dead one again. The one exception is `RollBack`, raised on purpose
between statements: the connection is known to be healthy and goes back to the pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

# asyncpg.Record: read by column name (`record["status"]`) or position (`record[0]`).
Record = Mapping[str | int, Any]


class Driver(Protocol):
    """The part of `asyncpg.Connection` (which ships no type information) used here."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetch(self, query: str, *args: Any) -> list[Record]: ...

    async def fetchrow(self, query: str, *args: Any) -> Record | None: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def executemany(self, query: str, args: Sequence[Sequence[Any]]) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...


class RollBack(Exception):  # noqa: N818 - it names what it does, not a failure
    """Raised inside `driver_unit_of_work` to end it with a rollback and keep the connection.

    Raised between statements, so the connection is in a known state; a rollback that fails
    raises its own error, which invalidates the connection as any other failure does.
    """


_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]


class DriverStatement:
    """A Core statement compiled once for asyncpg; run with named parameters."""

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self._names = tuple(compiled.positiontup or ())
        # Values the statement carries itself (literals Core turned into parameters); a
        # parameter left without a value is then a KeyError, not a NULL.
        self._fixed = {
            name: bind.value
            for bind, name in compiled.bind_names.items()
            if not bind.required and not bind.callable
        }

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        return [
            parameters[name] if name in parameters else self._fixed[name] for name in self._names
        ]

    async def execute(self, driver: Driver, parameters: Mapping[str, Any]) -> None:
        await driver.execute(self.sql, *self.arguments(parameters))

    async def executemany(self, driver: Driver, rows: Sequence[Mapping[str, Any]]) -> None:
        """The statement once per row, sent together (asyncpg: one round trip)."""
        await driver.executemany(self.sql, [self.arguments(row) for row in rows])

    async def fetch(self, driver: Driver, parameters: Mapping[str, Any]) -> list[Record]:
        return await driver.fetch(self.sql, *self.arguments(parameters))

    async def fetchrow(self, driver: Driver, parameters: Mapping[str, Any]) -> Record | None:
        return await driver.fetchrow(self.sql, *self.arguments(parameters))

    async def fetchval(self, driver: Driver, parameters: Mapping[str, Any]) -> Any:
        return await driver.fetchval(self.sql, *self.arguments(parameters))


@asynccontextmanager
async def pooled_driver(engine: AsyncEngine) -> AsyncIterator[Driver]:
    """The asyncpg connection of a pooled connection. SQLAlchemy begins no transaction on it
    (it runs no statement), so each statement is its own unless the caller opens one."""
    async with engine.connect() as connection:
        driver: Driver | None = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        try:
            yield driver
        except RollBack:
            raise
        except BaseException:  # cancelled mid-statement too: the protocol state is unknown
            await connection.invalidate()
            raise


@asynccontextmanager
async def driver_unit_of_work(engine: AsyncEngine) -> AsyncIterator[Driver]:
    """One transaction on the driver: committed if the block succeeds, else rolled back (and
    the connection invalidated, see `pooled_driver`)."""
    async with pooled_driver(engine) as driver, driver.transaction():
        yield driver
