"""Fault tests: each breaks one piece of the real system mid-run, then checks exactly-once.

They reuse the metering fixtures (a Stripe stand-in, in-process workers with a fast backoff)
and add servers they own. Each test records what it observed; the counts are written to
`test-artifacts/faults/last-run.json` for docs/reliability.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sensor_billing.settings import Settings
from tests.faults.checks import Settled, on_a_fast_schedule, tally_sweeps
from tests.faults.servers import CountingStripeHTTPClient, RedisServer

# The metering suite's fixtures, shared rather than copied.
from tests.metering.conftest import (  # noqa: F401
    CLIENT_TIMEOUT_SECONDS,
    HTTP_CLIENTS,
    close_http_clients,
    collect_garbage_while_the_loop_runs,
    make_worker,
    running_standin,
    standin,
    worker_settings,
)
from tests.metering.test_worker_process import worker_env  # noqa: F401

ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "faults" / "last-run.json"


class Observations:
    """Counts per test, merged into the artifact (a partial run keeps the others' last counts)."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}

    def record(self, test: str, started: float, **counts: Any) -> None:
        self.runs[test] = {
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started, 1),
            **counts,
        }

    def write(self) -> None:
        if not self.runs:
            return
        previous: dict[str, Any] = {}
        if ARTIFACT.exists():
            previous = json.loads(ARTIFACT.read_text()).get("tests", {})
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        ARTIFACT.write_text(json.dumps({"tests": {**previous, **self.runs}}, indent=2) + "\n")


@pytest.fixture(scope="session")
def observations() -> Iterator[Observations]:
    collected = Observations()
    yield collected
    collected.write()


@pytest.fixture
def observe(observations: Observations, request: pytest.FixtureRequest) -> Any:
    """`observe(**counts)` records this test's counts (call it after the checks pass)."""
    started = time.monotonic()

    def record(**counts: Any) -> None:
        observations.record(request.node.name, started, **counts)

    return record


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def stripe_calls() -> CountingStripeHTTPClient:
    """An HTTP client for an in-process worker (`make_worker(http_client=stripe_calls)`) that
    counts its meter-event calls; closed with the metering fixtures' clients."""
    client = CountingStripeHTTPClient(timeout=CLIENT_TIMEOUT_SECONDS)
    HTTP_CLIENTS.append(client)
    return client


@pytest.fixture
def start_worker(
    make_worker: Any,  # noqa: F811 (the shared fixture, requested)
    worker_settings: Settings,  # noqa: F811 (the shared fixture, requested)
    stripe_calls: CountingStripeHTTPClient,
) -> Any:
    """`await start_worker(**setting_updates)`: an in-process worker on a fast close-windows
    schedule, with its Stripe calls and its sweeps counted. Returns (worker, sweeps)."""

    async def start(**updates: Any) -> tuple[Any, Settled]:
        settings = on_a_fast_schedule(worker_settings.model_copy(update=updates))
        worker = make_worker(settings, http_client=stripe_calls, schedule_check_seconds=0.2)
        sweeps = tally_sweeps(worker)
        await worker.start()
        return worker, sweeps

    return start
