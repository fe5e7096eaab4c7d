"""Metering against real PostgreSQL, Redis and the Stripe stand-in over HTTP."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from sqlalchemy import text

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import (
    DEFAULT_API_KEY,
    FaultPlan,
    RunningStandin,
    run_in_thread,
)
from sensor_billing.jobs.registry import METER_REPORT_JOB_OPTIONS
from sensor_billing.jobs.worker import MeteringWorker
from sensor_billing.settings import Settings, load_settings
from sensor_billing.stripe_api.client import StripeHTTPClient, create_http_client

# The seed's retry policy with the backoff scaled from 5 s to 20 ms: same shape, fast tests.
FAST_JOB_OPTIONS = {**METER_REPORT_JOB_OPTIONS, "backoff": {"type": "exponential", "delay": 20}}
DAY = timedelta(days=1)
CLIENT_TIMEOUT_SECONDS = 0.5

METERS = (("active_sensors", "last"), ("temperature_readings", "sum"))


@pytest.fixture(scope="session")
def running_standin() -> Iterator[RunningStandin]:
    with run_in_thread(api_keys=[DEFAULT_API_KEY]) as standin:
        yield standin


HTTP_CLIENTS: list[stripe.HTTPClient] = []


def make_http_client() -> StripeHTTPClient:
    """The service's Stripe HTTP client with a short timeout (injected timeouts last longer);
    closed after each test."""
    http = create_http_client(timeout=CLIENT_TIMEOUT_SECONDS)
    HTTP_CLIENTS.append(http)
    return http


def make_client(standin: RunningStandin, key: str = DEFAULT_API_KEY) -> stripe.StripeClient:
    return stripe.StripeClient(
        key,
        http_client=make_http_client(),
        base_addresses={"api": standin.url, "meter_events": standin.url},
        max_network_retries=0,
    )


@pytest.fixture
async def standin(running_standin: RunningStandin) -> RunningStandin:
    """An empty stand-in with the two meters this service reports to, and no faults."""
    running_standin.state.reset()
    running_standin.state.set_faults(FaultPlan())
    client = make_client(running_standin)
    for event_name, formula in METERS:
        await client.v1.billing.meters.create_async(
            {
                "display_name": event_name,
                "event_name": event_name,
                "default_aggregation": {"formula": formula},
                "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
                "value_settings": {"event_payload_key": "value"},
            }
        )
    return running_standin


@pytest.fixture
def worker_settings(database_url: str, redis_url: str, standin: RunningStandin) -> Settings:
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        stripe_api_key=DEFAULT_API_KEY,
        stripe_api_base=standin.url,
        stripe_meter_events_base=standin.url,
        meter_window_seconds=86_400,
        meter_grace_seconds=0,
        meter_rate_limit_per_second=1000,
        meter_stream_threshold=1_000_000,
        meter_worker_concurrency=8,
    )


@pytest.fixture
async def make_worker(
    worker_settings: Settings, standin: RunningStandin, sessions: SessionFactory
) -> AsyncIterator[Any]:
    workers: list[MeteringWorker] = []

    def build(settings: Settings | None = None, **kwargs: Any) -> MeteringWorker:
        kwargs.setdefault("job_options", FAST_JOB_OPTIONS)
        kwargs.setdefault("revive_after", timedelta(0))
        kwargs.setdefault("http_client", make_http_client())
        worker = MeteringWorker(settings or worker_settings, **kwargs)
        workers.append(worker)
        return worker

    yield build
    errors = []
    for worker in workers:
        try:
            await worker.stop()
        except Exception as error:  # stop the others, then report
            errors.append(error)
    assert not errors, errors


@pytest.fixture(autouse=True)
async def close_http_clients() -> AsyncIterator[None]:
    """Close every client `make_http_client` made during the test (autouse: torn down after
    the workers that use them have stopped). aiohttp warns about a session left open."""
    yield
    while HTTP_CLIENTS:
        await HTTP_CLIENTS.pop().close_async()  # type: ignore[no-untyped-call]


class MovingClock:
    """The worker's clock and the stand-in's, moved forward together."""

    def __init__(self, standin: RunningStandin) -> None:
        self.standin = standin
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by
        self.standin.state.clock.advance(by.total_seconds())


async def ledger_counts(sessions: SessionFactory) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(text("SELECT status, count(*) FROM meter_reports GROUP BY 1"))
        return {status: int(count) for status, count in rows}


async def drain(worker: MeteringWorker, sessions: SessionFactory, within: float = 60) -> None:
    """Run until no ledger row is pending, sweeping now and then as the scheduler would."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (await ledger_counts(sessions)).get("pending", 0):
        if loop.time() > deadline:
            raise AssertionError(f"rows still pending: {await ledger_counts(sessions)}")
        await asyncio.sleep(0.5)
        await worker.run_close_windows()


@pytest.fixture(autouse=True)
def collect_garbage_while_the_loop_runs() -> Iterator[None]:
    """Collect what a test left behind while its event loop still runs, so a client that was
    not closed shows up as that test's warning instead of a crash at interpreter exit."""
    yield
    gc.collect()


@pytest.fixture
def cli_stripe_env(worker_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Operator commands see the worker's database, Redis and stand-in (through the
    environment, as a script would)."""
    for name in (
        "database_url",
        "redis_url",
        "stripe_api_base",
        "stripe_meter_events_base",
        "meter_window_seconds",
        "meter_grace_seconds",
        "meter_rate_limit_per_second",
    ):
        monkeypatch.setenv(name.upper(), str(getattr(worker_settings, name)))
    monkeypatch.setenv("STRIPE_API_KEY", DEFAULT_API_KEY)
    return worker_settings
