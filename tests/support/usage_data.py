"""Generated usage: organizations, sensors whose status changes over time, readings.

Everything is random but seeded, written with plain SQL, and the expected per-window values
are computed here in Python from what was generated, not by the SQL under test.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work


@dataclass
class GeneratedOrganization:
    id: uuid.UUID
    customer_id: str | None
    # (sensor id, [(status, valid_from)]) in time order
    sensors: list[tuple[uuid.UUID, list[tuple[str, datetime]]]] = field(default_factory=list)
    readings: list[datetime] = field(default_factory=list)  # received_at

    def active_sensors_at(self, moment: datetime) -> int:
        """Sensors active at the close of a window ending at `moment`: windows are
        [start, end), so a change at `moment` itself belongs to the next window."""
        active = 0
        for _, history in self.sensors:
            status = None
            for value, since in history:
                if since < moment:
                    status = value
            active += status == "active"
        return active

    def readings_between(self, start: datetime, end: datetime) -> int:
        return sum(1 for moment in self.readings if start <= moment < end)


async def generate_usage(
    sessions: SessionFactory,
    *,
    organizations: int,
    start: datetime,
    end: datetime,
    readings_per_org: int,
    seed: int = 7,
    without_customer: int = 0,
) -> list[GeneratedOrganization]:
    rng = random.Random(seed)
    span = (end - start).total_seconds()
    generated: list[GeneratedOrganization] = []
    async with unit_of_work(sessions) as session:
        for index in range(organizations + without_customer):
            customer = f"cus_gen_{seed}_{index}" if index < organizations else None
            org = GeneratedOrganization(uuid.uuid4(), customer)
            await session.execute(
                text(
                    "INSERT INTO organizations (id, name, stripe_customer_id)"
                    " VALUES (:id, :name, :customer)"
                ),
                {"id": org.id, "name": f"Org {index}", "customer": customer},
            )
            for number in range(rng.randint(1, 6)):
                sensor_id = uuid.uuid4()
                created = start - timedelta(days=1)
                history = [("active", created)]
                await session.execute(
                    text(
                        "INSERT INTO sensors (id, organization_id, serial, status,"
                        " status_changed_at, created_at) VALUES (:id, :org, :serial, 'active',"
                        " :at, :at)"
                    ),
                    {"id": sensor_id, "org": org.id, "serial": f"S-{number}", "at": created},
                )
                moment = start
                for _ in range(rng.randint(0, 3)):
                    moment += timedelta(seconds=rng.uniform(0, span / 3))
                    if moment >= end:
                        break
                    status = rng.choice(["active", "inactive", "retired"])
                    history.append((status, moment))
                    await session.execute(
                        text(
                            "UPDATE sensors SET status = :status, status_changed_at = :at"
                            " WHERE id = :id"
                        ),
                        {"status": status, "at": moment, "id": sensor_id},
                    )
                org.sensors.append((sensor_id, history))
            sensor_ids = [sensor for sensor, _ in org.sensors]
            org.readings = [
                start + timedelta(seconds=rng.uniform(0, span)) for _ in range(readings_per_org)
            ]
            await session.execute(
                text(
                    "INSERT INTO temperature_readings (organization_id, sensor_id, value_celsius,"
                    " recorded_at, received_at) VALUES (:org, :sensor, :value, :at, :at)"
                ),
                [
                    {
                        "org": org.id,
                        "sensor": rng.choice(sensor_ids),
                        "value": round(rng.uniform(-30, 10), 2),
                        "at": moment,
                    }
                    for moment in org.readings
                ],
            )
            generated.append(org)
    return generated


def expected_readings_by_window(
    org: GeneratedOrganization, window: timedelta, until: datetime
) -> Counter[datetime]:
    size = int(window.total_seconds())
    counts: Counter[datetime] = Counter()
    for moment in org.readings:
        start = datetime.fromtimestamp(int(moment.timestamp()) // size * size, moment.tzinfo)
        if start + window <= until:
            counts[start] += 1
    return counts
