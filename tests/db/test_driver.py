"""Core statements run on the driver: their parameters, and the driver's unit of work."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.db import SessionFactory
from sensor_billing.db.driver import DriverStatement, RollBack, driver_unit_of_work
from sensor_billing.webhooks import repository
from tests.support.state import count

GREATEST = DriverStatement(select(func.greatest(bindparam("value"), 7)))
BACKEND_PID = DriverStatement(select(func.pg_backend_pid()))


async def test_a_statement_sends_its_own_literals_beside_the_values_given(
    engine: AsyncEngine,
) -> None:
    async with driver_unit_of_work(engine) as connection:
        assert await GREATEST.fetchval(connection, {"value": 3}) == 7
        assert await GREATEST.fetchval(connection, {"value": 11}) == 11


def test_a_value_left_out_is_refused_instead_of_sent_as_null() -> None:
    with pytest.raises(KeyError, match="value"):
        GREATEST.arguments({"valeu": 3})


async def test_an_error_in_the_unit_of_work_rolls_back_what_it_wrote(
    engine: AsyncEngine, sessions: SessionFactory
) -> None:
    with pytest.raises(RuntimeError, match="after the write"):
        async with driver_unit_of_work(engine) as connection:
            assert await repository.record_event_on(connection, "evt_rolled_back", "invoice.paid")
            raise RuntimeError("after the write")
    async with driver_unit_of_work(engine) as connection:
        assert await repository.record_event_on(connection, "evt_committed", "invoice.paid")

    assert await count(sessions, "stripe_events", "event_id = 'evt_rolled_back'") == 0
    assert await count(sessions, "stripe_events", "event_id = 'evt_committed'") == 1


async def test_a_roll_back_asked_for_undoes_the_writes_and_keeps_the_connection(
    engine: AsyncEngine, sessions: SessionFactory
) -> None:
    async def backend_after(error: Exception) -> tuple[int, int]:
        with pytest.raises(type(error)):
            async with driver_unit_of_work(engine) as connection:
                before = await BACKEND_PID.fetchval(connection, {})
                assert await repository.record_event_on(connection, "evt_undone", "invoice.paid")
                raise error
        async with driver_unit_of_work(engine) as connection:
            return before, await BACKEND_PID.fetchval(connection, {})

    kept = await backend_after(RollBack())
    replaced = await backend_after(RuntimeError("a failure: the connection's state is unknown"))

    assert kept[0] == kept[1]
    assert replaced[0] != replaced[1]
    assert await count(sessions, "stripe_events", "event_id = 'evt_undone'") == 0
