"""`sensor-billing usage backfill` and `usage ledger` against real PostgreSQL."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.settings import get_settings
from tests.cli.conftest import UNREACHABLE_DATABASE_URL, run_cli
from tests.support.usage_data import GeneratedOrganization, generate_usage

DAY = timedelta(days=1)


def today() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


async def ledger(sessions: SessionFactory) -> dict[tuple[str, datetime], tuple[int, str]]:
    async with sessions() as session:
        rows = await session.execute(
            text("SELECT event_name, window_start, value, status FROM meter_reports")
        )
        return {(event, start): (int(value), status) for event, start, value, status in rows}


async def cursor_of(sessions: SessionFactory, organization_id: uuid.UUID) -> datetime:
    async with sessions() as session:
        value = await session.scalar(
            text("SELECT closed_through FROM metering_cursors WHERE organization_id = :org"),
            {"org": organization_id},
        )
    assert isinstance(value, datetime)
    return value


async def execute(sessions: SessionFactory, sql: str, **params: object) -> None:
    async with unit_of_work(sessions) as session:
        await session.execute(text(sql), params)


@pytest.fixture
async def closed_usage(cli_env: SessionFactory) -> GeneratedOrganization:
    """One metered organization with six days of usage, every window closed and sent."""
    start = today() - 6 * DAY
    [org] = await generate_usage(
        cli_env, organizations=1, start=start, end=today() - DAY, readings_per_org=300
    )
    outcome = run_cli("usage", "close")
    assert outcome.exit_code == 0, outcome.stderr
    await execute(cli_env, "UPDATE meter_reports SET status = 'sent', sent_at = now()")
    return org


async def test_backfill_recreates_only_the_missing_windows_in_the_range(
    cli_env: SessionFactory, closed_usage: GeneratedOrganization
) -> None:
    org = closed_usage
    day = [today() - 6 * DAY + n * DAY for n in range(6)]
    before = await ledger(cli_env)
    assert len(before) == 12
    cursor_before = await cursor_of(cli_env, org.id)
    await execute(cli_env, "DELETE FROM meter_reports WHERE window_start = :d", d=day[1])
    await execute(
        cli_env,
        "DELETE FROM meter_reports WHERE window_start = :d AND event_name = 'temperature_readings'",
        d=day[3],
    )
    await execute(cli_env, "DELETE FROM meter_reports WHERE window_start = :d", d=day[4])

    outcome = run_cli(
        "usage", "backfill", "--since", f"{day[1]:%Y-%m-%d}", "--until", f"{day[3]:%Y-%m-%d}"
    )

    assert outcome.exit_code == 0, outcome.stderr
    assert "backfilling windows" in outcome.stdout
    assert "2 missing in 1 organization(s)" in outcome.stdout
    after = await ledger(cli_env)
    recreated = {key: after[key] for key in after.keys() - before.keys()}
    assert recreated == {}  # same keys as before, minus the window after --until
    assert ("active_sensors", day[4]) not in after
    for window in (day[1], day[3]):
        readings = org.readings_between(window, window + DAY)
        assert after[("temperature_readings", window)] == (readings, "pending")
    assert after[("active_sensors", day[1])] == (org.active_sensors_at(day[2]), "pending")
    untouched = {key: value for key, value in after.items() if value[1] == "sent"}
    assert len(untouched) == 12 - 3 - 2  # deleted 5 rows, recreated 3
    assert await cursor_of(cli_env, org.id) == cursor_before


async def test_backfill_records_windows_beyond_stripes_limit_as_skipped(
    cli_env: SessionFactory,
) -> None:
    [org] = await generate_usage(
        cli_env, organizations=1, start=today() - DAY, end=today(), readings_per_org=1
    )
    assert run_cli("usage", "close").exit_code == 0
    cursor_before = await cursor_of(cli_env, org.id)
    since, until = today() - 40 * DAY, today() - 37 * DAY

    outcome = run_cli(
        "usage",
        "backfill",
        "--since",
        f"{since:%Y-%m-%d}",
        "--until",
        f"{until:%Y-%m-%d}",
        "--org",
        str(org.id),
    )

    assert outcome.exit_code == 0, outcome.stderr
    assert "8 skipped" in outcome.stdout
    async with cli_env() as session:
        reasons = set(
            await session.scalars(
                text("SELECT DISTINCT skip_reason FROM meter_reports WHERE window_start < :u"),
                {"u": until + DAY},
            )
        )
    assert reasons == {"beyond Stripe's 35-day limit for meter event timestamps"}
    assert await cursor_of(cli_env, org.id) == cursor_before


async def test_backfill_with_nothing_missing_creates_nothing(
    cli_env: SessionFactory, closed_usage: GeneratedOrganization
) -> None:
    before = await ledger(cli_env)
    outcome = run_cli("usage", "backfill", "--since", f"{today() - 6 * DAY:%Y-%m-%d}")
    assert outcome.exit_code == 0, outcome.stderr
    assert "rows created: none" in outcome.stdout
    assert await ledger(cli_env) == before


def switch_window(monkeypatch: pytest.MonkeyPatch, *, hours: int) -> None:
    """METER_WINDOW_SECONDS changed, as the next command (a new process) reads it."""
    monkeypatch.setenv("METER_WINDOW_SECONDS", str(hours * 3600))
    get_settings.cache_clear()


async def billed_readings(
    sessions: SessionFactory, organization_id: uuid.UUID
) -> list[tuple[datetime, datetime, int]]:
    """The organization's live `temperature_readings` window rows as (start, end, value)."""
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT window_start, window_end, value FROM meter_reports"
                " WHERE organization_id = :org AND event_name = 'temperature_readings'"
                " AND source = 'window' AND status IN ('pending', 'sent')"
                " ORDER BY window_start"
            ),
            {"org": organization_id},
        )
        return [(start, end, int(value)) for start, end, value in rows]


def assert_billed_once(
    rows: list[tuple[datetime, datetime, int]], org: GeneratedOrganization
) -> None:
    """No two rows overlap, and each row bills exactly the readings of its own span."""
    for (_, earlier_end, _), (later_start, _, _) in itertools.pairwise(rows):
        assert earlier_end <= later_start, rows
    for start, end, value in rows:
        assert value == org.readings_between(start, end)


async def test_backfill_after_days_became_hours_bills_no_reading_twice(
    cli_env: SessionFactory,
    closed_usage: GeneratedOrganization,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    org = closed_usage
    day = today() - 4 * DAY
    switch_window(monkeypatch, hours=1)
    before = await ledger(cli_env)

    outcome = run_cli(
        "usage", "backfill", "--since", f"{day:%Y-%m-%d}", "--until", f"{day:%Y-%m-%d}"
    )

    assert outcome.exit_code == 0, outcome.stderr
    assert "rows created: none" in outcome.stdout
    assert await ledger(cli_env) == before
    assert_billed_once(await billed_readings(cli_env, org.id), org)


async def test_backfill_after_hours_became_days_recreates_only_the_missing_hour(
    cli_env: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    switch_window(monkeypatch, hours=1)
    [org] = await generate_usage(
        cli_env, organizations=1, start=today() - 3 * DAY, end=today(), readings_per_org=2000
    )
    assert run_cli("usage", "close").exit_code == 0
    day = today() - 2 * DAY
    await execute(cli_env, "DELETE FROM meter_reports WHERE window_start = :d", d=day)
    switch_window(monkeypatch, hours=24)

    outcome = run_cli(
        "usage", "backfill", "--since", f"{day:%Y-%m-%d}", "--until", f"{day:%Y-%m-%d}"
    )

    assert outcome.exit_code == 0, outcome.stderr
    rows = await billed_readings(cli_env, org.id)
    assert_billed_once(rows, org)
    hour = day + timedelta(hours=1)
    assert (day, hour, org.readings_between(day, hour)) in rows


async def test_backfill_of_an_organization_never_closed_leaves_its_first_close_whole(
    cli_env: SessionFactory,
) -> None:
    [org] = await generate_usage(
        cli_env, organizations=1, start=today() - 4 * DAY, end=today(), readings_per_org=300
    )
    yesterday = today() - DAY

    outcome = run_cli("usage", "backfill", "--since", f"{yesterday:%Y-%m-%d}")
    assert outcome.exit_code == 0, outcome.stderr
    assert run_cli("usage", "close").exit_code == 0

    rows = await billed_readings(cli_env, org.id)
    assert_billed_once(rows, org)
    assert sum(value for _, _, value in rows) == org.readings_between(today() - 4 * DAY, today())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-13-01"], "--since '2026-13-01' is not a date"),
        (["--since", "2026-11-01", "--until", "soon"], "--until 'soon' is not a date"),
        (["--since", "2026-11-10", "--until", "2026-11-01"], "must be before --until"),
        # A typo for 2026: windows from year 202 would be recorded, hour by hour.
        (["--since", "0202-11-01", "--until", "0202-11-02"], "is before 1970-01-01"),
        (["--since", "0001-01-01", "--until", "0001-01-02"], "is before 1970-01-01"),
        (["--since", "2026-11-01", "--org", "acme"], "--org 'acme' is not an organization id"),
        (
            ["--since", "2026-11-01", "--org", "00000000-0000-0000-0000-000000000001"],
            "no organization with id 00000000-0000-0000-0000-000000000001",
        ),
    ],
)
@pytest.mark.usefixtures("cli_env")
def test_backfill_refuses_bad_input_in_one_line(args: list[str], message: str) -> None:
    outcome = run_cli("usage", "backfill", *args)
    assert outcome.exit_code == 2
    assert message in outcome.stderr
    assert len(outcome.stderr.strip().splitlines()) == 1


async def test_backfill_refuses_an_organization_without_customer(cli_env: SessionFactory) -> None:
    [org] = await generate_usage(
        cli_env,
        organizations=0,
        without_customer=1,
        start=today() - DAY,
        end=today(),
        readings_per_org=1,
    )
    outcome = run_cli("usage", "backfill", "--since", "2026-11-01", "--org", str(org.id))
    assert outcome.exit_code == 2
    assert "has no live Stripe customer" in outcome.stderr


@pytest.mark.usefixtures("closed_usage")
def test_ledger_lists_rows_newest_window_first_as_json() -> None:
    outcome = run_cli("usage", "ledger", "--limit", "3", "--json")
    assert outcome.exit_code == 0, outcome.stderr
    rows = json.loads(outcome.stdout)
    assert len(rows) == 3
    starts = [row["windowStart"] for row in rows]
    assert starts == sorted(starts, reverse=True)
    assert {row["status"] for row in rows} == {"sent"}
    assert set(rows[0]) >= {"eventName", "value", "attempts", "lastError", "skipReason", "sentAt"}


async def test_ledger_filters_by_status_and_shows_the_reason(
    cli_env: SessionFactory, closed_usage: GeneratedOrganization
) -> None:
    await execute(
        cli_env,
        "UPDATE meter_reports SET status = 'failed', attempts = 5, last_error = 'No such customer'"
        " WHERE window_start = :d AND event_name = 'active_sensors'",
        d=today() - DAY,
    )
    outcome = run_cli("usage", "ledger", "--status", "failed", "--org", str(closed_usage.id))
    assert outcome.exit_code == 0, outcome.stderr
    assert "No such customer" in outcome.stdout
    assert "active_sensors" in outcome.stdout
    assert "temperature_readings" not in outcome.stdout


async def test_ledger_prints_a_long_error_whole_off_a_terminal(
    cli_env: SessionFactory, closed_usage: GeneratedOrganization
) -> None:
    error = "Stripe refused the meter event: " + "the customer was deleted in Stripe; " * 4
    await execute(cli_env, "UPDATE meter_reports SET status = 'failed', last_error = :e", e=error)

    outcome = run_cli("usage", "ledger", "--limit", "1")

    assert outcome.exit_code == 0, outcome.stderr
    assert error.strip() in outcome.stdout
    assert str(closed_usage.id) in outcome.stdout
    assert "…" not in outcome.stdout


async def test_ledger_lists_only_rows_stripe_reported_invalid_with_stripe_error(
    cli_env: SessionFactory, closed_usage: GeneratedOrganization
) -> None:
    """The rows an operator must re-send after Stripe's meter error events (docs/operations.md),
    however far back among sent rows they are."""
    await execute(
        cli_env,
        "UPDATE meter_reports SET stripe_error_code = 'meter_event_customer_not_found',"
        " stripe_error_message = 'No such customer' WHERE window_start IN (:a, :b)"
        " AND event_name = 'temperature_readings'",
        a=today() - 5 * DAY,
        b=today() - 3 * DAY,
    )

    outcome = run_cli("usage", "ledger", "--stripe-error", "--limit", "5", "--json")
    table = run_cli("usage", "ledger", "--stripe-error", "--org", str(closed_usage.id))

    assert outcome.exit_code == table.exit_code == 0, outcome.stderr
    rows = json.loads(outcome.stdout)
    assert [(row["windowStart"][:10], row["stripeErrorCode"]) for row in rows] == [
        (f"{today() - 3 * DAY:%Y-%m-%d}", "meter_event_customer_not_found"),
        (f"{today() - 5 * DAY:%Y-%m-%d}", "meter_event_customer_not_found"),
    ]
    assert "meter_event_customer_not_found" in table.stdout
    assert "active_sensors" not in table.stdout


@pytest.mark.usefixtures("cli_env")
def test_ledger_refuses_an_unknown_organization() -> None:
    outcome = run_cli("usage", "ledger", "--org", str(uuid.uuid4()))
    assert outcome.exit_code == 2
    assert "no organization with id" in outcome.stderr


@pytest.mark.usefixtures("cli_env")
def test_ledger_refuses_an_unknown_status() -> None:
    assert run_cli("usage", "ledger", "--status", "lost").exit_code == 2


async def test_errors_lists_stripes_meter_error_reports_newest_first(
    cli_env: SessionFactory, closed_usage: GeneratedOrganization
) -> None:
    insert = (
        "INSERT INTO meter_error_reports (stripe_event_id, event_type, code, error_count,"
        " organization_id, sample_message, event_created_at) VALUES (:event, :type, :code,"
        " :count, :org, :sample, :at)"
    )
    older, newer = today() - 2 * DAY, today() - DAY
    await execute(
        cli_env, insert, event="evt_old", type="v1.billing.meter.error_report_triggered",
        code="meter_event_customer_not_found", count=2, org=closed_usage.id,
        sample="No customer cus_x", at=older,
    )  # fmt: skip
    await execute(
        cli_env, insert, event="evt_new", type="v1.billing.meter.no_meter_found",
        code="no_meter", count=7, org=None, sample=None, at=newer,
    )  # fmt: skip

    everything = run_cli("usage", "errors", "--json")
    only_org = run_cli("usage", "errors", "--json", "--org", str(closed_usage.id))
    recent = run_cli("usage", "errors", "--json", "--since", f"{newer:%Y-%m-%d}")
    table = run_cli("usage", "errors")

    assert everything.exit_code == only_org.exit_code == recent.exit_code == 0, everything.stderr
    rows = json.loads(everything.stdout)
    assert [(row["code"], row["errorCount"]) for row in rows] == [
        ("no_meter", 7),
        ("meter_event_customer_not_found", 2),
    ]
    assert rows[0]["organizationId"] is None
    assert [row["stripeEventId"] for row in json.loads(only_org.stdout)] == ["evt_old"]
    assert [row["stripeEventId"] for row in json.loads(recent.stdout)] == ["evt_new"]
    assert "(not named)" in table.stdout
    assert "No customer cus_x" in table.stdout


@pytest.mark.usefixtures("cli_env")
def test_errors_refuses_an_unknown_organization_and_a_bad_date() -> None:
    unknown = run_cli("usage", "errors", "--org", str(uuid.uuid4()))
    assert unknown.exit_code == 2
    assert "no organization with id" in unknown.stderr
    bad = run_cli("usage", "errors", "--since", "yesterday")
    assert bad.exit_code == 2
    assert "--since" in bad.stderr


@pytest.mark.parametrize(
    "command", [["backfill", "--since", "2026-11-01"], ["ledger"], ["close"], ["errors"]]
)
def test_usage_commands_exit_3_when_postgresql_does_not_answer(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE_DATABASE_URL)
    outcome = run_cli("usage", *command)
    assert outcome.exit_code == 3
    assert "PostgreSQL at DATABASE_URL does not answer" in outcome.stderr
