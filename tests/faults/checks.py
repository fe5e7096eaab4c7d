"""The checks every fault test ends with, and the counts it reports.

What Stripe accepted is read from the stand-in's control route (`GET /_standin/state`), what
it should have accepted from PostgreSQL: readings counted per organization and window straight
from `temperature_readings`, gauges from the sensors' generated status history. Both sides are
compared window by window, exactly.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel
from sqlalchemy import text

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.settings import Settings
from tests.support.usage_data import GeneratedOrganization, generate_usage

# (customer, event_name, window start as Unix seconds)
WindowKey = tuple[str, str, int]

READINGS_PER_WINDOW = text("""
SELECT o.stripe_customer_id,
       floor(extract(epoch FROM t.received_at) / :window)::bigint * :window AS window_start,
       count(*)
  FROM temperature_readings t
  JOIN organizations o ON o.id = t.organization_id
 WHERE o.stripe_customer_id IS NOT NULL
 GROUP BY 1, 2
""")


async def standin_state(standin: RunningStandin) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=standin.url) as client:
        response = await client.get("/_standin/state")
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state


async def ledger_counts(sessions: SessionFactory) -> dict[str, int]:
    async with sessions() as session:
        rows = await session.execute(text("SELECT status, count(*) FROM meter_reports GROUP BY 1"))
        return {status: int(count) for status, count in rows}


async def expected_usage(
    sessions: SessionFactory, orgs: list[GeneratedOrganization], window: timedelta
) -> dict[WindowKey, int]:
    """Every window the service has closed, per metered organization: readings received in
    it (only non-empty windows are reported) and sensors active at its end (every window)."""
    size = int(window.total_seconds())
    async with sessions() as session:
        closed = (
            (await session.execute(text("SELECT DISTINCT closed_through FROM metering_cursors")))
            .scalars()
            .all()
        )
        readings = (await session.execute(READINGS_PER_WINDOW, {"window": size})).all()
    assert len(closed) == 1, f"organizations closed through different ends: {closed}"
    closed_through = int(closed[0].timestamp())
    expected: dict[WindowKey, int] = {}
    first_window: dict[str, int] = {}
    for customer, window_start, count in readings:
        start = int(window_start)
        first_window[customer] = min(first_window.get(customer, start), start)
        if start + size <= closed_through:
            expected[(customer, "temperature_readings", start)] = int(count)
    for org in orgs:
        if org.customer_id is None or org.customer_id not in first_window:
            continue
        for start in range(first_window[org.customer_id], closed_through, size):
            end = datetime.fromtimestamp(start + size, UTC)
            expected[(org.customer_id, "active_sensors", start)] = org.active_sensors_at(end)
    return expected


async def assert_usage_exact(
    sessions: SessionFactory,
    standin: RunningStandin,
    orgs: list[GeneratedOrganization],
    window: timedelta,
) -> dict[str, Any]:
    """Stripe has each closed window's usage exactly once, the ledger agrees, nothing waits.
    Returns the counts the run observed."""
    state = await standin_state(standin)
    events = state["events"]
    size = int(window.total_seconds())
    per_identifier = Counter(event["identifier"] for event in events)
    twice = {identifier: n for identifier, n in per_identifier.items() if n > 1}
    assert not twice, f"identifiers accepted more than once: {twice}"
    assert not state["error_reports"], state["error_reports"][:3]
    counted = [e for e in events if e["error_code"] is None and not e["cancelled"]]
    keys = Counter((e["customer"], e["event_name"], e["timestamp"] + 1 - size) for e in counted)
    assert all(n == 1 for n in keys.values()), "a window was billed under two identifiers"
    accepted = {
        (e["customer"], e["event_name"], e["timestamp"] + 1 - size): int(e["value"])
        for e in counted
    }
    expected = await expected_usage(sessions, orgs, window)
    missing = sorted(set(expected) - set(accepted))[:5]
    extra = sorted(set(accepted) - set(expected))[:5]
    wrong = sorted(k for k in set(expected) & set(accepted) if expected[k] != accepted[k])[:5]
    assert not missing, f"windows Stripe never accepted: {missing}"
    assert not extra, f"windows Stripe accepted that nobody measured: {extra}"
    assert not wrong, [(key, expected[key], accepted[key]) for key in wrong]

    counts = await ledger_counts(sessions)
    assert set(counts) <= {"sent", "skipped"}, f"ledger rows not settled: {counts}"
    async with sessions() as session:
        sent = set(
            (
                await session.execute(
                    text("SELECT identifier FROM meter_reports WHERE status = 'sent'")
                )
            ).scalars()
        )
        attempts = int(
            await session.scalar(text("SELECT coalesce(sum(attempts), 0) FROM meter_reports")) or 0
        )
    assert sent == set(per_identifier), "the ledger's sent rows differ from what Stripe has"
    counters = state["counters"]
    return {
        "readings": sum(
            v for (_, name, _), v in expected.items() if name == "temperature_readings"
        ),
        "windows": len(expected),
        "events_accepted": len(events),
        "meter_calls_committed": attempts,
        "retries_committed": attempts - len(sent),
        "duplicates_refused": counters["duplicates_refused"],
        "idempotent_replays": counters["idempotent_replays"],
        "rate_limited": counters["rate_limited"],
        "faults_injected": counters["faults_injected"],
    }


@dataclass
class Settled:
    """What the sweeps did while the test waited: each run of close-windows (the schedule's
    or the test's own) closes, then sweeps."""

    sweeps: int = 0
    sweeps_failed: int = 0
    jobs_enqueued: int = 0  # pending rows that had no job (lost, or never added)
    jobs_revived: int = 0  # jobs that had run out of attempts

    def add(self, result: Mapping[str, Any]) -> None:
        self.sweeps += 1
        self.jobs_enqueued += int(result.get("enqueued", 0))
        self.jobs_revived += int(result.get("revived", 0))


Sweep = Callable[[], Awaitable[Mapping[str, Any]]]


def on_a_fast_schedule(settings: Settings) -> Settings:
    """Close windows (and sweep) every second instead of every few minutes, the way
    FAST_JOB_OPTIONS scales the retry backoff down. `model_copy` skips the 10 s floor that
    guards production settings."""
    return settings.model_copy(update={"meter_close_interval_seconds": 1})


def tally_sweeps(worker: Any) -> Settled:
    """Count every close-windows run of an in-process worker, scheduled or not."""
    settled = Settled()
    close = worker.run_close_windows

    async def counted() -> Mapping[str, Any]:
        try:
            result: Mapping[str, Any] = await close()
        except Exception:
            settled.sweeps_failed += 1
            raise
        settled.add(result)
        return result

    worker.run_close_windows = counted
    return settled


async def settle(sessions: SessionFactory, *, within: float, sweep: Sweep | None = None) -> Settled:
    """Wait until no ledger row is pending. With `sweep`, the test sweeps every round itself
    (for worker processes it cannot count); a sweep that fails is tried again next round."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    settled = Settled()
    while (await ledger_counts(sessions)).get("pending", 0):
        if loop.time() > deadline:
            raise AssertionError(f"rows still pending: {await ledger_counts(sessions)}")
        if sweep is not None:
            try:
                settled.add(await sweep())
            except Exception:  # the fault may still be on: the next round tries again
                settled.sweeps_failed += 1
        await asyncio.sleep(0.2)
    return settled


async def days_of_usage(
    sessions: SessionFactory, *, organizations: int, days: int, seed: int
) -> list[GeneratedOrganization]:
    """`days` of readings and sensor changes up to now, plus one organization without a
    Stripe customer (never billed)."""
    now = datetime.now(UTC)
    return await generate_usage(
        sessions,
        organizations=organizations,
        start=now - timedelta(days=days),
        end=now,
        readings_per_org=30 * days,
        without_customer=1,
        seed=seed,
    )


async def control(standin: RunningStandin, route: str, body: BaseModel) -> None:
    """Set the stand-in's faults or configuration through its control routes."""
    async with httpx.AsyncClient(base_url=standin.url) as client:
        response = await client.post(
            f"/_standin/{route}",
            content=body.model_dump_json(),
            headers={"Content-Type": "application/json"},
        )
        response.raise_for_status()
