"""`sensor-billing usage correct`: cancel and replace within 24 h, compensate after."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.devtools.stripe_standin import metering as standin_metering
from sensor_billing.devtools.stripe_standin.errors import ApiFailureError
from sensor_billing.devtools.stripe_standin.state import StandinState
from sensor_billing.metering.corrections import CorrectionKind, CorrectionRequest, correct_usage
from sensor_billing.metering.reporter import Verdict, report_usage
from sensor_billing.metering.windows import event_timestamp, floor_to_window
from sensor_billing.settings import Settings
from sensor_billing.stripe_api.meter_events import MeterEvent
from sensor_billing.stripe_api.meters import cancel_meter_event
from tests.cli.conftest import run_cli
from tests.metering.conftest import DAY, drain, ledger_counts, make_client
from tests.support.usage_data import GeneratedOrganization, generate_usage

LATE = timedelta(hours=25)  # past Stripe's 24 h cancel window


def today() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


@pytest.fixture
async def sent(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, cli_stripe_env: Settings
) -> tuple[GeneratedOrganization, Any]:
    """One organization, five days of usage, every window sent; the worker keeps running."""
    [org] = await generate_usage(
        sessions, organizations=1, start=today() - 5 * DAY, end=today(), readings_per_org=200
    )
    worker = make_worker()
    await worker.start()
    await drain(worker, sessions)
    return org, worker


async def rows(sessions: SessionFactory) -> list[dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(
            text(
                "SELECT r.identifier, r.event_name, r.window_start, r.value, r.status, r.source,"
                " o.identifier AS corrects, r.correction_reason FROM meter_reports r"
                " LEFT JOIN meter_reports o ON o.id = r.corrects_id ORDER BY r.id"
            )
        )
        return [dict(row._mapping) for row in result]


def window_row(all_rows: list[dict[str, Any]], event_name: str, start: datetime) -> dict[str, Any]:
    [row] = [
        r
        for r in all_rows
        if r["event_name"] == event_name and r["window_start"] == start and r["source"] == "window"
    ]
    return row


def correct(org: GeneratedOrganization, meter: str, window: datetime, value: int) -> Any:
    return run_cli(
        "usage",
        "correct",
        "--org",
        str(org.id),
        "--meter",
        meter,
        "--window",
        window.isoformat(),
        "--value",
        str(value),
        "--reason",
        "sensor double-counted",
        "--json",
    )


def period() -> str:
    return f"{today() - 5 * DAY:%Y-%m-%d}..{today() - DAY:%Y-%m-%d}"


def assert_reconciles() -> None:
    outcome = run_cli("reconcile", "--period", period())
    assert outcome.exit_code == 0, outcome.stdout


async def no_wait() -> None:
    return None


def standin_cancel(standin: RunningStandin) -> Callable[[str, str], Awaitable[None]]:
    """`correct_usage`'s cancel, against the stand-in, without the throttle's wait."""
    client = make_client(standin)

    async def cancel(event_name: str, identifier: str) -> None:
        await cancel_meter_event(client, no_wait, event_name=event_name, identifier=identifier)

    return cancel


def readings_total(standin: RunningStandin, org: GeneratedOrganization) -> Decimal:
    return standin.state.accepted_totals()[(str(org.customer_id), "temperature_readings")]


async def make_late(sessions: SessionFactory, standin: RunningStandin) -> None:
    """25 hours pass, for the ledger and for Stripe."""
    async with unit_of_work(sessions) as session:
        await session.execute(
            text("UPDATE meter_reports SET sent_at = sent_at - make_interval(hours => 25)")
        )
    standin.state.clock.advance(LATE.total_seconds())


async def test_a_correction_within_a_day_cancels_and_replaces_the_event(
    sessions: SessionFactory, standin: RunningStandin, sent: tuple[GeneratedOrganization, Any]
) -> None:
    org, worker = sent
    window = today() - 2 * DAY
    original = window_row(await rows(sessions), "temperature_readings", window)
    total_before = standin.state.accepted_totals()[(str(org.customer_id), "temperature_readings")]

    outcome = correct(org, "temperature_readings", window, original["value"] + 5)
    assert outcome.exit_code == 0, outcome.stderr
    answer = json.loads(outcome.stdout)
    await drain(worker, sessions)

    assert answer["kind"] == "replacement"
    assert answer["cancelled"] == original["identifier"]
    assert answer["identifier"] == original["identifier"] + ".r1"
    after = await rows(sessions)
    assert window_row(after, "temperature_readings", window)["status"] == "cancelled"
    [replacement] = [r for r in after if r["source"] == "correction"]
    assert replacement == {
        "identifier": original["identifier"] + ".r1",
        "event_name": "temperature_readings",
        "window_start": window,
        "value": original["value"] + 5,
        "status": "sent",
        "source": "correction",
        "corrects": original["identifier"],
        "correction_reason": "sensor double-counted",
    }
    assert readings_total(standin, org) == total_before + 5
    assert_reconciles()


async def test_repeating_a_correction_changes_nothing(
    sessions: SessionFactory, standin: RunningStandin, sent: tuple[GeneratedOrganization, Any]
) -> None:
    org, worker = sent
    window = today() - 2 * DAY
    original = window_row(await rows(sessions), "temperature_readings", window)
    first = correct(org, "temperature_readings", window, original["value"] + 5)
    assert first.exit_code == 0, first.stderr
    # Once while the replacement is pending, once after it was sent.
    again = correct(org, "temperature_readings", window, original["value"] + 5)
    await drain(worker, sessions)
    events = len(standin.state.accepted_events())
    once_more = correct(org, "temperature_readings", window, original["value"] + 5)

    assert again.exit_code == 0, again.stderr
    assert once_more.exit_code == 0, once_more.stderr
    assert json.loads(again.stdout)["kind"] == "unchanged"
    assert json.loads(once_more.stdout)["kind"] == "unchanged"
    assert len([r for r in await rows(sessions) if r["source"] == "correction"]) == 1
    await worker.run_close_windows()
    assert len(standin.state.accepted_events()) == events


async def test_a_refused_cancel_writes_nothing(
    sessions: SessionFactory, standin: RunningStandin, sent: tuple[GeneratedOrganization, Any]
) -> None:
    org, _ = sent
    window = today() - 2 * DAY
    before = await rows(sessions)
    original = window_row(before, "temperature_readings", window)
    # Stripe's clock says the event is older than 24 h; the ledger's sent_at does not.
    standin.state.clock.advance(LATE.total_seconds())

    outcome = correct(org, "temperature_readings", window, original["value"] + 1)

    assert outcome.exit_code == 1
    assert "24 hours" in outcome.stderr
    assert await rows(sessions) == before
    assert await ledger_counts(sessions) == {"sent": len(before)}


async def test_a_value_the_ledger_cannot_hold_is_refused_before_stripe_cancels(
    sessions: SessionFactory, standin: RunningStandin, sent: tuple[GeneratedOrganization, Any]
) -> None:
    org, _ = sent
    window = today() - 2 * DAY
    before = await rows(sessions)
    total_before = readings_total(standin, org)

    outcome = correct(org, "temperature_readings", window, 2**63)

    assert outcome.exit_code == 2, outcome.stdout + outcome.stderr
    assert "--value" in outcome.stderr
    assert len(outcome.stderr.strip().splitlines()) == 1
    assert await rows(sessions) == before
    assert readings_total(standin, org) == total_before  # nothing cancelled in Stripe


async def test_a_late_correction_of_a_sum_is_a_compensating_event_in_the_newest_window(
    sessions: SessionFactory, standin: RunningStandin, sent: tuple[GeneratedOrganization, Any]
) -> None:
    org, worker = sent
    window = today() - 3 * DAY
    original = window_row(await rows(sessions), "temperature_readings", window)
    total_before = standin.state.accepted_totals()[(str(org.customer_id), "temperature_readings")]
    await make_late(sessions, standin)

    outcome = correct(org, "temperature_readings", window, original["value"] - 3)
    assert outcome.exit_code == 0, outcome.stderr
    await drain(worker, sessions)
    again = correct(org, "temperature_readings", window, original["value"] - 3)

    assert json.loads(outcome.stdout)["kind"] == "compensation"
    assert json.loads(again.stdout)["kind"] == "unchanged"
    after = await rows(sessions)
    assert window_row(after, "temperature_readings", window)["status"] == "sent"
    [compensation] = [r for r in after if r["source"] == "correction"]
    assert compensation["identifier"] == original["identifier"] + ".c1"
    assert compensation["value"] == -3
    assert compensation["status"] == "sent"
    assert compensation["corrects"] == original["identifier"]
    # The newest window that has ended when the correction is made.
    assert compensation["window_start"] == today() - DAY
    [event] = [e for e in standin.state.accepted_events() if e.identifier.endswith(".c1")]
    assert event.value == "-3"
    assert event.timestamp == int(today().timestamp()) - 1
    assert readings_total(standin, org) == total_before - 3
    assert_reconciles()


@pytest.mark.parametrize("late", [False, True])
async def test_a_row_stripe_reported_invalid_is_not_corrected_by_difference(
    sessions: SessionFactory,
    standin: RunningStandin,
    sent: tuple[GeneratedOrganization, Any],
    late: bool,
) -> None:
    org, _ = sent
    window = today() - 3 * DAY
    original = window_row(await rows(sessions), "temperature_readings", window)
    # Stripe accepted the event, then found it invalid: it counts on no invoice.
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "UPDATE meter_reports SET stripe_error_code = 'meter_event_customer_not_found',"
                " stripe_error_message = 'No customer', stripe_error_at = now()"
                " WHERE identifier = :identifier"
            ),
            {"identifier": original["identifier"]},
        )
    if late:
        await make_late(sessions, standin)
    before = await rows(sessions)

    same = correct(org, "temperature_readings", window, original["value"])
    more = correct(org, "temperature_readings", window, original["value"] + 5)

    for outcome in (same, more):
        assert outcome.exit_code == 1, outcome.stdout
        assert "meter_event_customer_not_found" in outcome.stderr
        assert len(outcome.stderr.strip().splitlines()) == 1
    assert await rows(sessions) == before


async def test_a_late_correction_of_a_superseded_gauge_is_recorded_not_sent(
    sessions: SessionFactory, standin: RunningStandin, sent: tuple[GeneratedOrganization, Any]
) -> None:
    org, worker = sent
    window = today() - 3 * DAY
    original = window_row(await rows(sessions), "active_sensors", window)
    events = len(standin.state.accepted_events())
    await make_late(sessions, standin)

    outcome = correct(org, "active_sensors", window, original["value"] + 2)
    assert outcome.exit_code == 0, outcome.stderr
    await worker.run_close_windows()

    assert json.loads(outcome.stdout)["kind"] == "recorded"
    [recorded] = [r for r in await rows(sessions) if r["source"] == "correction"]
    assert (recorded["status"], recorded["value"]) == ("skipped", original["value"] + 2)
    assert len(standin.state.accepted_events()) == events
    assert (
        json.loads(correct(org, "active_sensors", window, original["value"] + 2).stdout)["kind"]
        == "unchanged"
    )
    assert_reconciles()


async def test_a_window_without_a_sent_row_cannot_be_corrected(
    sessions: SessionFactory, standin: RunningStandin, cli_stripe_env: Settings
) -> None:
    [org] = await generate_usage(
        sessions, organizations=1, start=today() - 2 * DAY, end=today(), readings_per_org=20
    )
    assert run_cli("usage", "close").exit_code == 0
    before = await rows(sessions)

    pending = correct(org, "active_sensors", today() - DAY, 99)
    unknown = correct(org, "active_sensors", today() - 40 * DAY, 99)
    misaligned = correct(org, "active_sensors", today() - DAY + timedelta(hours=1), 99)

    assert pending.exit_code == 1
    assert "still pending" in pending.stderr
    assert unknown.exit_code == 2
    assert "no ledger row" in unknown.stderr
    assert misaligned.exit_code == 2
    assert "not the start of a 86400 s window" in misaligned.stderr
    assert await rows(sessions) == before


async def test_a_job_for_a_cancelled_row_sends_nothing(
    sessions: SessionFactory, standin: RunningStandin, sent: tuple[GeneratedOrganization, Any]
) -> None:
    org, worker = sent
    window = today() - 2 * DAY
    original = window_row(await rows(sessions), "temperature_readings", window)
    assert correct(org, "temperature_readings", window, 1).exit_code == 0
    await drain(worker, sessions)  # the replacement goes out; the original must not
    events = len(standin.state.accepted_events())

    async def never(event: MeterEvent) -> bool:
        raise AssertionError("a cancelled row was sent")

    async def no_wait() -> None:
        return None

    result = await report_usage(
        worker.ledger,
        original["identifier"],
        send=never,
        throttle=no_wait,
        now=datetime.now(UTC),
        check_stale=worker.check_stale,
    )

    assert result.verdict is Verdict.CANCELLED
    assert len(standin.state.accepted_events()) == events


async def test_a_window_stripe_can_no_longer_take_is_compensated_not_cancelled(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, worker_settings: Settings
) -> None:
    # Hourly windows; the window's event timestamp is just inside Stripe's 35 days when sent.
    hour = timedelta(hours=1)
    now = datetime.now(UTC)
    window_end = floor_to_window(now, hour) - timedelta(days=35) + 3 * hour
    window = window_end - hour
    [org] = await generate_usage(
        sessions, organizations=1, start=window, end=window_end, readings_per_org=30
    )
    offset = [timedelta(0)]
    worker = make_worker(
        worker_settings.model_copy(update={"meter_window_seconds": 3600}),
        clock=lambda: datetime.now(UTC) + offset[0],
    )
    await worker.start()
    await drain(worker, sessions)
    original = window_row(await rows(sessions), "temperature_readings", window)
    assert (original["status"], original["value"]) == ("sent", 30)

    # A few hours later (well within Stripe's 24 h cancel window) the window's timestamp is
    # more than 35 days old: Stripe still cancels its event, but takes no replacement for it.
    late = datetime.fromtimestamp(event_timestamp(window_end), UTC) + timedelta(days=35, minutes=10)
    offset[0] = late - datetime.now(UTC)
    standin.state.clock.advance(offset[0].total_seconds())
    cancel = standin_cancel(standin)

    async with unit_of_work(sessions) as session:
        result = await correct_usage(
            session,
            CorrectionRequest(org.id, "temperature_readings", window, 35, "missed readings"),
            window=hour,
            now=worker.clock(),
            cancel=cancel,
        )
    await drain(worker, sessions)

    assert result.kind is CorrectionKind.COMPENSATION
    # Stripe bills the corrected value: the window's usage is not withdrawn for good.
    totals = standin.state.accepted_totals()
    assert totals.get((str(org.customer_id), "temperature_readings"), Decimal(0)) == 35
    assert "failed" not in await ledger_counts(sessions)


async def test_a_window_of_an_earlier_window_length_can_still_be_corrected(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, worker_settings: Settings
) -> None:
    # Closed and sent in hours; METER_WINDOW_SECONDS is a day by the time it is corrected.
    [org] = await generate_usage(
        sessions, organizations=1, start=today() - DAY, end=today(), readings_per_org=200
    )
    worker = make_worker(worker_settings.model_copy(update={"meter_window_seconds": 3600}))
    await worker.start()
    await drain(worker, sessions)
    window = today() - DAY + timedelta(hours=5)
    original = window_row(await rows(sessions), "temperature_readings", window)
    total_before = readings_total(standin, org)
    cancel = standin_cancel(standin)

    async with unit_of_work(sessions) as session:
        result = await correct_usage(
            session,
            CorrectionRequest(org.id, "temperature_readings", window, original["value"] + 4),
            window=DAY,
            now=datetime.now(UTC),
            cancel=cancel,
        )
    await drain(worker, sessions)

    assert result.kind is CorrectionKind.REPLACEMENT
    assert readings_total(standin, org) == total_before + 4


@pytest.mark.parametrize("cancelled_before_the_500", [False, True])
async def test_a_cancel_that_stripe_answered_500_can_be_run_again_at_once(
    sessions: SessionFactory,
    standin: RunningStandin,
    sent: tuple[GeneratedOrganization, Any],
    monkeypatch: pytest.MonkeyPatch,
    cancelled_before_the_500: bool,
) -> None:
    org, worker = sent
    window = today() - 2 * DAY
    original = window_row(await rows(sessions), "temperature_readings", window)
    total_before = readings_total(standin, org)
    real_cancel = standin_metering.cancel

    def cancel_then_fail(state: StandinState, event_name: str, identifier: str) -> None:
        if cancelled_before_the_500:
            real_cancel(state, event_name, identifier)
        # The endpoint began executing: Stripe keeps this 500 under the key for 24 h.
        raise ApiFailureError("Sorry, something went wrong.", saved_by_idempotency=True)

    monkeypatch.setattr(standin_metering, "cancel", cancel_then_fail)
    failed = correct(org, "temperature_readings", window, original["value"] + 5)
    monkeypatch.setattr(standin_metering, "cancel", real_cancel)
    assert failed.exit_code == 1
    assert await ledger_counts(sessions) == {"sent": len(await rows(sessions))}

    again = correct(org, "temperature_readings", window, original["value"] + 5)
    assert again.exit_code == 0, again.stderr
    await drain(worker, sessions)

    assert json.loads(again.stdout)["kind"] == "replacement"
    assert readings_total(standin, org) == total_before + 5
    assert_reconciles()
