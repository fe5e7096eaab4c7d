"""`sensor-billing reconcile`: the ledger against the stand-in's meter event summaries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.devtools.stripe_standin.metering import cancel
from sensor_billing.settings import Settings, get_settings
from tests.cli.conftest import run_cli
from tests.metering.conftest import DAY, drain, make_client
from tests.support.usage_data import GeneratedOrganization, generate_usage


def today() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


PERIOD_DAYS = 10


def period() -> str:
    """The last ten closed days, as an operator types them (END included)."""
    return f"{today() - PERIOD_DAYS * DAY:%Y-%m-%d}..{today() - DAY:%Y-%m-%d}"


async def sent_usage(
    sessions: SessionFactory, make_worker: Any, organizations: int = 3
) -> list[GeneratedOrganization]:
    orgs = await generate_usage(
        sessions,
        organizations=organizations,
        start=today() - PERIOD_DAYS * DAY,
        end=today(),
        readings_per_org=120,
        seed=5,
    )
    worker = make_worker()
    await worker.start()
    await drain(worker, sessions)
    return orgs


def reconcile_json(*args: str) -> tuple[int, dict[str, Any]]:
    outcome = run_cli("reconcile", "--period", period(), "--json", *args)
    assert outcome.exit_code in (0, 1), outcome.stderr
    return outcome.exit_code, json.loads(outcome.stdout)


async def test_usage_sent_normally_reconciles_without_drift_across_many_pages(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, cli_stripe_env: Settings
) -> None:
    orgs = await sent_usage(sessions, make_worker, organizations=4)

    code, report = reconcile_json()

    assert code == 0
    assert report["drift"] is False
    assert report["windows"] == []
    assert report["unsent"] == []
    # 240 hourly summaries per customer and meter: three pages of at most 100 each.
    assert {meter["windowsCompared"] for meter in report["meters"]} == {PERIOD_DAYS * 24}
    assert len(report["meters"]) == 2 * len(orgs)
    totals = {
        (meter["organizationId"], meter["eventName"]): meter["ledger"] for meter in report["meters"]
    }
    for org in orgs:
        readings = org.readings_between(today() - PERIOD_DAYS * DAY, today())
        assert totals[(str(org.id), "temperature_readings")] == readings
        assert totals[(str(org.id), "active_sensors")] == org.active_sensors_at(today())


async def test_an_event_stripe_lost_is_drift_with_the_right_numbers(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, cli_stripe_env: Settings
) -> None:
    [org, *_] = await sent_usage(sessions, make_worker)
    async with sessions() as session:
        identifier, value, window_end = (
            await session.execute(
                text(
                    "SELECT identifier, value, window_end FROM meter_reports WHERE status = 'sent'"
                    " AND event_name = 'temperature_readings' AND organization_id = :org"
                    " ORDER BY window_start LIMIT 1"
                ),
                {"org": org.id},
            )
        ).one()
    # The ledger says sent; Stripe no longer counts it.
    cancel(standin.state, "temperature_readings", identifier)

    code, report = reconcile_json()

    assert code == 1
    assert report["drift"] is True
    hour = window_end - timedelta(hours=1)
    assert report["windows"] == [
        {
            "organizationId": str(org.id),
            "customer": org.customer_id,
            "eventName": "temperature_readings",
            "windowStart": hour.isoformat(),
            "windowEnd": window_end.isoformat(),
            "ledger": value,
            "stripe": 0,
            "drift": -value,
        }
    ]
    [meter] = [
        m
        for m in report["meters"]
        if m["organizationId"] == str(org.id) and m["eventName"] == "temperature_readings"
    ]
    assert meter["drift"] == -value
    assert meter["windowsWithDrift"] == 1

    table = run_cli("reconcile", "--period", period())
    assert table.exit_code == 1
    assert "drift found" in table.stdout
    assert f"{hour.isoformat(timespec='minutes')}" in table.stdout


async def test_an_extra_event_in_stripe_is_drift(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, cli_stripe_env: Settings
) -> None:
    [org, *_] = await sent_usage(sessions, make_worker)
    moment = today() - 3 * DAY + timedelta(hours=5, minutes=10)
    client = make_client(standin)
    await client.v1.billing.meter_events.create_async(
        {
            "event_name": "temperature_readings",
            "payload": {"stripe_customer_id": str(org.customer_id), "value": "7"},
            "identifier": "stray-event-1",
            "timestamp": int(moment.timestamp()),
        }
    )

    code, report = reconcile_json("--org", str(org.id))

    assert code == 1
    assert {m["organizationId"] for m in report["meters"]} == {str(org.id)}
    [drift] = report["windows"]
    assert drift["windowStart"] == (today() - 3 * DAY + timedelta(hours=5)).isoformat()
    assert (drift["ledger"], drift["stripe"], drift["drift"]) == (0, 7, 7)


async def closed_not_sent(sessions: SessionFactory) -> None:
    """Three days of one organization's usage closed into pending rows; no worker runs."""
    await generate_usage(
        sessions, organizations=1, start=today() - 3 * DAY, end=today(), readings_per_org=30
    )
    assert run_cli("usage", "close").exit_code == 0


async def test_pending_rows_are_unsent_not_drift(
    sessions: SessionFactory, standin: RunningStandin, cli_stripe_env: Settings
) -> None:
    await closed_not_sent(sessions)

    code, report = reconcile_json()

    assert code == 0
    assert report["drift"] is False
    assert report["unsent"]
    assert all(w["pendingRows"] >= 1 for w in report["unsent"])
    # No worker ran: only reconcile's calls can have used the account-wide budget in Redis.
    redis = Redis.from_url(cli_stripe_env.redis_url)
    try:
        assert await redis.exists("sensor-billing:stripe-calls")
    finally:
        await redis.aclose()


async def test_a_sent_row_stripe_never_got_is_drift(
    sessions: SessionFactory, standin: RunningStandin, cli_stripe_env: Settings
) -> None:
    await closed_not_sent(sessions)
    async with unit_of_work(sessions) as session:
        await session.execute(text("UPDATE meter_reports SET status = 'sent', sent_at = now()"))

    code, report = reconcile_json()

    assert code == 1
    assert report["windows"]
    assert all(w["stripe"] == 0 for w in report["windows"])


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2026-11-01", "not START..END"),
        ("2026-11-05..2026-11-01", "must be before"),
        ("2026-11-01T00:30:00Z..2026-11-02", "whole UTC hour"),
        ("yesterday..today", "is not a date"),
    ],
)
async def test_a_bad_period_is_a_usage_error_naming_the_problem(
    standin: RunningStandin, cli_stripe_env: Settings, value: str, problem: str
) -> None:
    outcome = run_cli("reconcile", "--period", value)

    assert outcome.exit_code == 2
    assert problem in outcome.stderr


async def test_meter_ids_in_the_settings_are_used_and_checked(
    standin: RunningStandin, cli_stripe_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = run_cli("stripe", "setup", "--json")
    assert setup.exit_code == 0, setup.stderr
    ids = json.loads(setup.stdout)["settings"]
    for name, meter_id in ids.items():
        monkeypatch.setenv(name, meter_id)
    get_settings.cache_clear()
    assert run_cli("reconcile", "--period", period()).exit_code == 0

    monkeypatch.setenv("STRIPE_METER_ACTIVE_SENSORS", ids["STRIPE_METER_TEMPERATURE_READINGS"])
    get_settings.cache_clear()  # as a new process would read the environment
    swapped = run_cli("reconcile", "--period", period())
    assert swapped.exit_code == 2
    assert "STRIPE_METER_ACTIVE_SENSORS" in swapped.stderr
    assert "'temperature_readings'" in swapped.stderr

    monkeypatch.setenv("STRIPE_METER_ACTIVE_SENSORS", "mtr_does_not_exist")
    get_settings.cache_clear()
    unknown = run_cli("reconcile", "--period", period())
    assert unknown.exit_code == 2
    assert "STRIPE_METER_ACTIVE_SENSORS=mtr_does_not_exist: Stripe has no such meter" in (
        unknown.stderr
    )
