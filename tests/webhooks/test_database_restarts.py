"""The webhook endpoint recovers when PostgreSQL ends its connections (restart, failover)."""

from __future__ import annotations

import httpx

from sensor_billing.db import SessionFactory
from sensor_billing.settings import Settings
from tests.support.app import running_app
from tests.support.databases import terminate_backends
from tests.support.stripe_events import deliver, make_event
from tests.webhooks.conftest import SECRET

POOL_SIZE = 2


def unhandled_event(number: int) -> dict[str, object]:
    # A type without a handler takes the single autocommit insert path.
    return make_event("customer.updated", {"id": f"cus_{number}"}, created=1_764_000_000)


async def test_unhandled_events_are_recorded_again_after_postgres_ended_the_connections(
    settings: Settings, sessions: SessionFactory
) -> None:
    limited = settings.model_copy(update={"database_pool_size": POOL_SIZE})
    async with running_app(limited) as (_, client):
        warm = [await deliver(client, unhandled_event(n), secret=SECRET) for n in range(2)]
        assert [response.status_code for response in warm] == [200, 200]
        assert await terminate_backends(sessions, "sensor-billing-api")

        # Stripe delivers again later: each dead pooled connection may fail one delivery,
        # then the pool must hold live connections again.
        responses: list[httpx.Response] = []
        for number in range(2, 8):
            responses.append(await deliver(client, unhandled_event(number), secret=SECRET))
    codes = [response.status_code for response in responses]
    assert codes.count(500) <= POOL_SIZE, codes
    assert codes[POOL_SIZE:] == [200] * (len(codes) - POOL_SIZE), codes
