"""Tenancy tables: a reading can only belong to its own sensor's organization."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import Organization, Sensor, SensorStatus, TemperatureReading


async def test_reading_naming_another_organizations_sensor_is_refused(
    sessions: SessionFactory,
) -> None:
    async with unit_of_work(sessions) as session:
        acme, globex = Organization(name="Acme"), Organization(name="Globex")
        session.add_all([acme, globex])
        await session.flush()
        globex_sensor = Sensor(organization_id=globex.id, serial="G-1")
        session.add(globex_sensor)

    with pytest.raises(IntegrityError, match="temperature_readings_organization_id_sensor_id_fkey"):
        async with unit_of_work(sessions) as session:
            session.add(
                TemperatureReading(
                    organization_id=acme.id,
                    sensor_id=globex_sensor.id,
                    value_celsius=Decimal("4.50"),
                    recorded_at=datetime.now(UTC),
                )
            )

    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(TemperatureReading)) == 0


async def test_new_sensor_is_active_and_reading_gets_received_at(sessions: SessionFactory) -> None:
    async with unit_of_work(sessions) as session:
        org = Organization(name="Acme")
        session.add(org)
        await session.flush()
        sensor = Sensor(organization_id=org.id, serial="A-1")
        session.add(sensor)
        await session.flush()
        reading = TemperatureReading(
            organization_id=org.id,
            sensor_id=sensor.id,
            value_celsius=Decimal("-18.25"),
            recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        session.add(reading)
        await session.flush()
        await session.refresh(sensor)
        await session.refresh(reading)
    assert sensor.status == SensorStatus.ACTIVE
    assert reading.received_at > reading.recorded_at


async def test_unknown_sensor_status_is_refused(sessions: SessionFactory) -> None:
    with pytest.raises(IntegrityError, match="sensors_status_check"):
        async with unit_of_work(sessions) as session:
            org = Organization(name="Acme")
            session.add(org)
            await session.flush()
            session.add(Sensor(organization_id=org.id, serial="A-1", status="broken"))
