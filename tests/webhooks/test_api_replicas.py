"""Two `sensor-billing serve` processes on one database and Redis, as two API replicas behind a
load balancer: the same events delivered to both, copies racing each other within a process and
across the two, have one effect each. Neither process knows what the other committed (each
keeps its own `recent.RecentEvents`), so between them only PostgreSQL decides."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from sensor_billing.db import SessionFactory
from sensor_billing.observability.scrape import MULTIPROC_DIR_VARIABLE
from tests.cli.test_serve_command import COMMAND, wait_until_healthy
from tests.faults.test_webhook_storm import (
    assert_every_object_at_its_newest_event,
    new_organizations,
    recorded_events_and_changes,
    storm_events,
)
from tests.metering.test_worker_process import die_with_parent
from tests.support.net import free_port
from tests.support.stripe_events import deliver

SECRET = "whsec_replicas_secret"
REPLICAS = ("a", "b")
COPIES_PER_REPLICA = 2  # the storm delivers each event this many times to each replica
# Two replicas share the test database with the rest of the machine's test runs.
POOL_SIZE_PER_REPLICA = 8

# (replica that answered, the event delivered, its answer)
Delivery = tuple[str, dict[str, Any], httpx.Response]


@asynccontextmanager
async def serve_process(env: dict[str, str], log: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A real `sensor-billing serve` on a free port; yields a client for it. SIGTERM at the end."""
    port = free_port()
    with log.open("wb") as sink:
        server = await asyncio.to_thread(
            subprocess.Popen,
            [COMMAND, "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        try:
            await asyncio.to_thread(wait_until_healthy, port, server, 30)
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30
            ) as client:
                yield client
        finally:
            server.send_signal(signal.SIGTERM)
            await asyncio.to_thread(server.wait, 30)


@asynccontextmanager
async def two_replicas(
    database_url: str, redis_url: str, logs: Path
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    env = {
        **{name: value for name, value in os.environ.items() if name != MULTIPROC_DIR_VARIABLE},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "DATABASE_POOL_SIZE": str(POOL_SIZE_PER_REPLICA),
        "LOG_LEVEL": "WARNING",
    }
    async with AsyncExitStack() as stack:
        started = await asyncio.gather(
            *(stack.enter_async_context(serve_process(env, logs / f"{r}.log")) for r in REPLICAS)
        )
        yield dict(zip(REPLICAS, started, strict=True))


async def delivered(
    clients: dict[str, httpx.AsyncClient], replica: str, event: dict[str, Any]
) -> Delivery:
    return replica, event, await deliver(clients[replica], event, secret=SECRET)


async def storm_across_replicas(
    clients: dict[str, httpx.AsyncClient], events: list[dict[str, Any]], rng: random.Random
) -> list[Delivery]:
    """Every copy of every event at once, shuffled: the copies of one event race in each
    process and between the processes, and different events of one object race too."""
    plan = [(r, e) for e in events for r in REPLICAS for _ in range(COPIES_PER_REPLICA)]
    rng.shuffle(plan)
    return list(await asyncio.gather(*(delivered(clients, r, e) for r, e in plan)))


async def pairs_at_the_same_instant(
    clients: dict[str, httpx.AsyncClient], events: list[dict[str, Any]], rng: random.Random
) -> list[Delivery]:
    """One event at a time, in shuffled order (older events after newer ones): sent to both
    replicas at the same instant, then once more to each after both answered."""
    order = list(events)
    rng.shuffle(order)
    deliveries: list[Delivery] = []
    for event in order:
        first, second = rng.sample(REPLICAS, 2)
        deliveries += await asyncio.gather(
            delivered(clients, first, event), delivered(clients, second, event)
        )
        for replica in REPLICAS:
            deliveries.append(await delivered(clients, replica, event))
    return deliveries


@pytest.mark.parametrize("schedule", [storm_across_replicas, pairs_at_the_same_instant])
async def test_the_same_events_delivered_to_two_api_processes_take_effect_once(
    schedule: Any,
    sessions: SessionFactory,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    organizations = await new_organizations(sessions)
    by_object = storm_events(organizations)
    events = [event for group in by_object.values() for event in group]

    async with two_replicas(database_url, redis_url, tmp_path) as clients:
        deliveries = await schedule(clients, events, random.Random(11))

    failed = [(r, e["id"], a.status_code, a.text) for r, e, a in deliveries if a.status_code != 200]
    assert not failed, failed[:3]
    processed = Counter(e["id"] for _, e, a in deliveries if a.json()["outcome"] == "processed")
    assert processed == Counter(event["id"] for event in events)  # one `processed` per event
    duplicates = sum(1 for _, _, a in deliveries if a.json()["outcome"] == "duplicate")
    assert duplicates == len(deliveries) - len(events)
    processed_by = Counter(r for r, _, a in deliveries if a.json()["outcome"] == "processed")
    # Both processes did share the work, so each had to find the other's rows in PostgreSQL.
    assert set(processed_by) == set(REPLICAS), processed_by
    applied = {
        e["id"]
        for _, e, a in deliveries
        if a.json()["outcome"] == "processed" and a.json()["effect"] == "applied"
    }

    recorded, changes = await recorded_events_and_changes(sessions)
    assert recorded == Counter(event["id"] for event in events)  # one row per event
    assert changes == Counter(applied)  # one row per applied change, none from a copy
    await assert_every_object_at_its_newest_event(sessions, organizations, by_object)
