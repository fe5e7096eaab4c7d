"""Demo data for `sensor-billing dev --demo`: a few organizations with Stripe customers and
sensors, and a steady trickle of temperature readings, so usage reaches the stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import Organization, Sensor, TemperatureReading

logger = logging.getLogger("sensor_billing.demo")

DEMO_ORGANIZATIONS = 3
SENSORS_PER_ORGANIZATION = 3
READING_INTERVAL_SECONDS = 1.0


def demo_customer_ids(count: int = DEMO_ORGANIZATIONS) -> list[str]:
    return [f"cus_demo_{number}" for number in range(1, count + 1)]


@dataclass(frozen=True)
class DemoSensor:
    organization_id: uuid.UUID
    sensor_id: uuid.UUID


async def seed_demo_organizations(
    sessions: SessionFactory, customer_ids: list[str | None]
) -> list[DemoSensor]:
    """Create (once; a restart finds them) one organization per customer id and its sensors."""
    async with unit_of_work(sessions) as session:
        for number, customer_id in enumerate(customer_ids, start=1):
            name = f"Demo organization {number}"
            organization_id = await session.scalar(
                select(Organization.id).where(Organization.name == name)
            )
            if organization_id is None:
                organization_id = await session.scalar(
                    insert(Organization)
                    .values(name=name, stripe_customer_id=customer_id)
                    .returning(Organization.id)
                )
            await session.execute(
                insert(Sensor)
                .values(
                    [
                        {"organization_id": organization_id, "serial": f"demo-{number}-{index}"}
                        for index in range(1, SENSORS_PER_ORGANIZATION + 1)
                    ]
                )
                .on_conflict_do_nothing(index_elements=["organization_id", "serial"])
            )
        rows = await session.execute(
            select(Sensor.organization_id, Sensor.id)
            .join(Organization, Organization.id == Sensor.organization_id)
            .where(Organization.name.like("Demo organization %"), Sensor.serial.like("demo-%"))
        )
        return [DemoSensor(organization_id, sensor_id) for organization_id, sensor_id in rows]


async def insert_readings_forever(
    sessions: SessionFactory,
    sensors: list[DemoSensor],
    stop: asyncio.Event,
    interval: float = READING_INTERVAL_SECONDS,
) -> None:
    """Every `interval`, one reading from a random sensor of each organization, until `stop`."""
    by_organization: dict[uuid.UUID, list[DemoSensor]] = {}
    for sensor in sensors:
        by_organization.setdefault(sensor.organization_id, []).append(sensor)
    rng = random.Random()  # noqa: S311 - demo temperatures, not secrets
    while not stop.is_set():
        now = datetime.now(UTC)
        rows = [
            {
                "organization_id": sensor.organization_id,
                "sensor_id": sensor.sensor_id,
                "value_celsius": Decimal(rng.randint(150, 250)) / 10,
                "recorded_at": now,
            }
            for sensor in (rng.choice(group) for group in by_organization.values())
        ]
        try:
            async with unit_of_work(sessions) as session:
                await session.execute(insert(TemperatureReading).values(rows))
        except Exception as error:  # keep the demo going through a blip; say what happened
            logger.warning("demo readings not inserted: %s", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
