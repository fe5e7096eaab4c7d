"""The engine names its process in pg_stat_activity."""

from __future__ import annotations

from sqlalchemy import text

from sensor_billing.db import create_engine


async def test_connections_carry_the_application_name(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, application_name="sensor-billing-probe")
    try:
        async with engine.connect() as connection:
            name = await connection.scalar(text("SELECT current_setting('application_name')"))
    finally:
        await engine.dispose()
    assert name == "sensor-billing-probe"
