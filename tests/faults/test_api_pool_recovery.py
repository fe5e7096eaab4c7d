"""The API's connection pool after PostgreSQL ends the API's connections: the requests waiting
for a connection get one within seconds, not after the pool's timeout."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from sensor_billing.db import SessionFactory, create_engine
from sensor_billing.settings import load_settings
from tests.faults.servers import TcpProxy, proxy_in_front_of
from tests.support.app import running_app
from tests.support.databases import terminate_backends
from tests.support.stripe_events import deliver, make_event

pytestmark = pytest.mark.faults

SECRET = "whsec_pool_secret"
API_APPLICATION_NAME = "sensor-billing-api"
POOL_SIZE = 4
BURST = 24  # six times the pool: most wait for a connection
# Long, so that a request left waiting for it is told apart from one answered at once.
POOL_TIMEOUT_SECONDS = 30.0
ANSWERED_WITHIN_SECONDS = 5.0


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    async with proxy_in_front_of(database_url, 5432) as server:
        yield server


def through(proxy: TcpProxy, database_url: str) -> str:
    # No TLS negotiation: the server's first answer is then the end of the start-up, by which
    # time pg_stat_activity shows the connection under its application_name.
    url = make_url(database_url).set(port=proxy.port).update_query_dict({"ssl": "disable"})
    return url.render_as_string(hide_password=False)


async def api_backends(sessions: SessionFactory) -> int:
    async with sessions() as session:
        found = await session.scalar(
            select(func.count())
            .select_from(text("pg_stat_activity"))
            .where(
                text("application_name = :name AND datname = current_database()").bindparams(
                    name=API_APPLICATION_NAME
                )
            )
        )
        return int(found or 0)


async def kill_the_connections_being_opened(
    sessions: SessionFactory, proxy: TcpProxy, opening: int
) -> float:
    """Once `opening` API connections are in their start-up (held by the proxy), end every API
    connection, then let the network through again; returns when it killed them."""
    deadline = time.monotonic() + 10
    while await api_backends(sessions) < opening:
        assert time.monotonic() < deadline, "the pool never opened its connections"
        await asyncio.sleep(0.02)
    assert await terminate_backends(sessions, API_APPLICATION_NAME) >= opening
    killed_at = time.monotonic()
    proxy.release()
    return killed_at


async def test_requests_waiting_for_a_connection_get_one_within_seconds_when_postgres_kills_the_ones_being_opened(  # noqa: E501
    sessions: SessionFactory, database_url: str, proxy: TcpProxy, observe: Any
) -> None:
    """A burst meets the API's empty pool, as after a restart: the pool opens POOL_SIZE
    connections and the other requests wait for one. PostgreSQL ends those connections before
    they are ready (`pg_terminate_backend`, as a failover or an operator does). The waiting
    requests must then open connections themselves instead of sleeping until the timeout."""
    engine = create_engine(
        through(proxy, database_url),
        pool_size=POOL_SIZE,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        application_name=API_APPLICATION_NAME,
    )

    async def one_request() -> str:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as error:
            return type(error).__name__
        return "answered"

    try:
        proxy.hold_new_connections()  # every connection the pool opens stays in its start-up
        burst = [asyncio.create_task(one_request()) for _ in range(BURST)]
        killed_at = await kill_the_connections_being_opened(sessions, proxy, POOL_SIZE)
        outcomes = Counter(await asyncio.gather(*burst))
        answered_after = time.monotonic() - killed_at
    finally:
        await engine.dispose()

    assert answered_after < ANSWERED_WITHIN_SECONDS, (
        f"the burst took {answered_after:.1f} s after the kill: {dict(outcomes)}"
    )
    assert outcomes["answered"] >= BURST - POOL_SIZE, outcomes  # only the killed ones failed
    observe(
        fault="PostgreSQL ends the connections a pool is opening, requests waiting",
        requests=BURST,
        pool_size=POOL_SIZE,
        outcomes=dict(outcomes),
        seconds_from_the_kill_to_the_last_answer=round(answered_after, 2),
    )


def paid_invoice(number: int) -> dict[str, Any]:
    invoice = {"id": f"in_pool_{number}", "object": "invoice", "customer": f"cus_pool_{number}"}
    return make_event("invoice.paid", invoice, created=1_764_000_000)


async def test_the_api_answers_within_seconds_after_postgres_kills_its_connections_in_a_burst(
    sessions: SessionFactory, database_url: str, redis_url: str, proxy: TcpProxy, observe: Any
) -> None:
    settings = load_settings(
        database_url=through(proxy, database_url),
        redis_url=redis_url,
        stripe_webhook_secret=SECRET,
        database_pool_size=POOL_SIZE,
        database_pool_timeout_seconds=POOL_TIMEOUT_SECONDS,
    )
    async with running_app(settings) as (_, client):
        proxy.hold_new_connections()
        burst = [
            asyncio.create_task(deliver(client, paid_invoice(n), secret=SECRET))
            for n in range(BURST)
        ]
        killed_at = await kill_the_connections_being_opened(sessions, proxy, 1)
        answers: list[httpx.Response] = await asyncio.gather(*burst)
        answered_after = time.monotonic() - killed_at
        # Stripe delivers the failed ones again: the API answers them as usual.
        failed = [n for n, answer in enumerate(answers) if answer.status_code != 200]
        again = [await deliver(client, paid_invoice(n), secret=SECRET) for n in failed]

    assert answered_after < ANSWERED_WITHIN_SECONDS, f"{answered_after:.1f} s after the kill"
    assert {answer.status_code for answer in answers} <= {200, 500}
    assert [(a.status_code, a.json()["outcome"]) for a in again] == [(200, "processed")] * len(
        failed
    )
    observe(
        fault="PostgreSQL ends the API's connections during a burst of deliveries",
        deliveries=BURST,
        answers=dict(Counter(str(answer.status_code) for answer in answers)),
        seconds_from_the_kill_to_the_last_answer=round(answered_after, 2),
        redelivered=len(failed),
    )
