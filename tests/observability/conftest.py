"""The app on the test database and Redis, a scrape parser, and the metering worker fixtures.

The worker fixtures are the metering tests' own (imported, so this package reports through the
same stand-in set-up); a non-root conftest may not declare `pytest_plugins`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sensor_billing.db import SessionFactory
from sensor_billing.settings import Settings, load_settings
from tests.metering.conftest import (  # noqa: F401 - fixtures, found by name
    close_http_clients,
    collect_garbage_while_the_loop_runs,
    make_worker,
    running_standin,
    standin,
    worker_settings,
)
from tests.support.app import running_app

SECRET = "whsec_observability_test_secret"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return load_settings(
        database_url=database_url, redis_url=redis_url, stripe_webhook_secret=SECRET
    )


@pytest.fixture
async def client(settings: Settings, sessions: SessionFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as (_, client):
        yield client


async def scrape(client: httpx.AsyncClient) -> Samples:
    """`GET /metrics`, parsed: (sample name, labels) to value."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a series not yet created (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def growth(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)
