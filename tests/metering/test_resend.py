"""`sensor-billing usage resend`: usage Stripe did not bill is re-sent once its cause is fixed.

End to end: the worker reports to the stand-in over HTTP; the stand-in refuses what Stripe
refuses (here a meter that reads another payload key, so every v1 event is a 400), or accepts
and later finds invalid (a customer it does not know).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.devtools.stripe_standin import Customer, RunningStandin
from sensor_billing.metering import meter_errors_repository
from sensor_billing.metering.usage_repository import ledger_usage
from sensor_billing.settings import Settings
from tests.cli.conftest import run_cli
from tests.metering.conftest import DAY, drain, ledger_counts, make_client
from tests.support.usage_data import GeneratedOrganization, generate_usage

NOW = datetime.now(UTC)
REFUSED_CODE = "parameter_missing"


async def replace_readings_meter(standin: RunningStandin, customer_key: str) -> None:
    """A new active `temperature_readings` meter mapping customers by `customer_key` (the
    old one deactivated): with another key than the service sends, Stripe refuses the
    events; `stripe setup` would put the right one back."""
    client = make_client(standin)
    meters = await client.v1.billing.meters.list_async({"status": "active"})
    for meter in meters.data:
        if meter.event_name == "temperature_readings":
            await client.v1.billing.meters.deactivate_async(meter.id)
    await client.v1.billing.meters.create_async(
        {
            "display_name": "temperature_readings",
            "event_name": "temperature_readings",
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": customer_key, "type": "by_id"},
            "value_settings": {"event_payload_key": "value"},
        }
    )


async def ledger(sessions: SessionFactory) -> list[dict[str, Any]]:
    async with sessions() as session:
        result = await session.execute(text("SELECT * FROM meter_reports ORDER BY id"))
        return [dict(row._mapping) for row in result]


def readings_in_stripe(standin: RunningStandin) -> dict[str, Decimal]:
    totals = standin.state.accepted_totals()
    return {
        customer: total
        for (customer, meter), total in totals.items()
        if meter == "temperature_readings"
    }


def readings_measured(orgs: list[GeneratedOrganization]) -> dict[str, Decimal]:
    closed = datetime(NOW.year, NOW.month, NOW.day, tzinfo=UTC)
    return {
        str(org.customer_id): Decimal(org.readings_between(NOW - 10 * DAY, closed)) for org in orgs
    }


def resend(*args: str) -> Any:
    return run_cli("usage", "resend", *args)


async def usage_refused_by_stripe(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any
) -> tuple[list[GeneratedOrganization], Any]:
    orgs = await generate_usage(
        sessions, organizations=2, start=NOW - 3 * DAY, end=NOW - DAY, readings_per_org=60
    )
    await replace_readings_meter(standin, customer_key="customer")
    worker = make_worker()
    await worker.start()
    await drain(worker, sessions)
    return orgs, worker


async def test_failed_rows_are_re_sent_by_code_once_the_cause_is_fixed(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, cli_stripe_env: Settings
) -> None:
    orgs, worker = await usage_refused_by_stripe(sessions, standin, make_worker)
    failed = [row for row in await ledger(sessions) if row["status"] == "failed"]
    assert failed
    assert {row["event_name"] for row in failed} == {"temperature_readings"}
    assert {row["last_error_code"] for row in failed} == {REFUSED_CODE}
    assert readings_in_stripe(standin) == {}

    await replace_readings_meter(standin, customer_key="stripe_customer_id")  # the fix
    listed = resend("--code", REFUSED_CODE)
    assert listed.exit_code == 0, listed.stderr
    assert "would re-send" in listed.stdout
    assert "failed" in (await ledger_counts(sessions))  # a dry run changes nothing

    done = resend("--code", REFUSED_CODE, "--yes", "--json")
    assert done.exit_code == 0, done.stderr
    answer = json.loads(done.stdout)
    assert sorted(row["identifier"] for row in answer["resent"]) == sorted(
        row["identifier"] for row in failed
    )
    assert {row["action"] for row in answer["resent"]} == {"same_identifier"}
    await drain(worker, sessions)

    assert readings_in_stripe(standin) == readings_measured(orgs)
    assert set(standin.state.identifier_accept_counts().values()) == {1}
    assert set(await ledger_counts(sessions)) <= {"sent", "skipped"}
    again = resend("--code", REFUSED_CODE, "--yes")
    assert again.exit_code == 1
    assert "nothing to re-send" in again.stdout


async def test_a_retried_job_of_a_failed_row_says_to_re_send_the_row(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, cli_stripe_env: Settings
) -> None:
    _, worker = await usage_refused_by_stripe(sessions, standin, make_worker)
    [row, *_] = [row for row in await ledger(sessions) if row["status"] == "failed"]
    job = await worker.queue.getJob(row["identifier"])
    await job.retry("failed", {"resetAttemptsMade": True})
    for _ in range(100):
        if await worker.queue.getJobState(row["identifier"]) == "failed":
            break
        await asyncio.sleep(0.1)
    job = await worker.queue.getJob(row["identifier"])

    assert f"usage resend --row {row['identifier']}" in job.failedReason
    assert [r["status"] for r in await ledger(sessions) if r["id"] == row["id"]] == ["failed"]


async def test_one_failed_row_is_re_sent_by_its_id_and_pending_or_sent_rows_never_are(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, cli_stripe_env: Settings
) -> None:
    _, worker = await usage_refused_by_stripe(sessions, standin, make_worker)
    rows = await ledger(sessions)
    failed = next(row for row in rows if row["status"] == "failed")
    sent = next(row for row in rows if row["status"] == "sent")
    await replace_readings_meter(standin, customer_key="stripe_customer_id")

    refused = resend("--row", sent["identifier"], "--yes")
    unknown = resend("--row", "sb.no-such-row", "--yes")
    done = resend("--row", str(failed["id"]), "--yes")
    await drain(worker, sessions)

    assert refused.exit_code == 1
    assert "is sent and Stripe reported no error for it: never re-sent" in refused.stderr
    assert unknown.exit_code == 2
    assert "no ledger row 'sb.no-such-row'" in unknown.stderr
    assert done.exit_code == 0, done.stderr
    after = {row["id"]: row for row in await ledger(sessions)}
    assert after[failed["id"]]["status"] == "sent"
    assert after[failed["id"]]["key_generation"] == failed["key_generation"] + 1
    assert (
        sum(1 for row in after.values() if row["status"] == "failed")
        == sum(1 for row in rows if row["status"] == "failed") - 1
    )
    assert standin.state.identifier_accept_counts()[failed["identifier"]] == 1


async def test_a_row_stripe_reported_invalid_is_re_sent_once_under_a_new_identifier(
    sessions: SessionFactory, standin: RunningStandin, make_worker: Any, cli_stripe_env: Settings
) -> None:
    [org] = await generate_usage(
        sessions, organizations=1, start=NOW - 3 * DAY, end=NOW - DAY, readings_per_org=60
    )
    with standin.state.lock:  # Stripe knows another customer only: events become invalid
        standin.state.customers["cus_someone_else"] = Customer(
            id="cus_someone_else", created=int(NOW.timestamp())
        )
    worker = make_worker()
    await worker.start()
    await drain(worker, sessions)
    invalid = next(
        row
        for row in await ledger(sessions)
        if row["event_name"] == "temperature_readings" and row["status"] == "sent"
    )
    # What the thin meter error event's handler writes (tests/metering/test_meter_error_feedback).
    async with unit_of_work(sessions) as session:
        await meter_errors_repository.mark_stripe_error(
            session,
            [invalid["id"]],
            code="meter_event_customer_not_found",
            message="No such customer",
            at=NOW,
            event_id="evt_meter_error_1",
        )
    with standin.state.lock:  # the fix: the customer exists in Stripe now
        standin.state.customers[str(org.customer_id)] = Customer(
            id=str(org.customer_id), created=int(NOW.timestamp())
        )

    done = resend("--row", invalid["identifier"], "--yes", "--json")
    twice = resend("--row", invalid["identifier"], "--yes")
    await drain(worker, sessions)

    assert done.exit_code == 0, done.stderr
    [resent] = json.loads(done.stdout)["resent"]
    assert resent["action"] == "new_identifier"
    assert resent["newIdentifier"].startswith(invalid["identifier"] + ".s")
    assert twice.exit_code == 1
    assert "already re-sent" in twice.stderr
    rows = {row["identifier"]: row for row in await ledger(sessions)}
    new = rows[resent["newIdentifier"]]
    assert (new["status"], new["value"], new["window_end"]) == (
        "sent",
        invalid["value"],
        invalid["window_end"],
    )
    assert rows[invalid["identifier"]]["replaced_by_id"] == new["id"]
    counted = Counter(event.identifier for event in standin.state.accepted_events() if event.counts)
    assert counted[resent["newIdentifier"]] == 1
    assert counted[invalid["identifier"]] == 0

    # The usage figures (GET /v1/.../usage) count the re-send, not the row it replaced.
    async with sessions() as session:
        figures = await ledger_usage(
            session, org.id, start=invalid["window_start"], end=invalid["window_end"]
        )
    readings = {f.figure: f for f in figures if f.event_name == "temperature_readings"}
    assert set(readings) == {"sent"}
    assert readings["sent"].total == invalid["value"]

    # Reconciliation counts the re-send instead of the row it replaced.
    day = invalid["window_start"]
    outcome = run_cli(
        "reconcile", "--period", f"{day:%Y-%m-%d}..{day:%Y-%m-%d}", "--org", str(org.id), "--json"
    )
    report = json.loads(outcome.stdout)
    readings = next(m for m in report["meters"] if m["eventName"] == "temperature_readings")
    assert readings["ledger"] == readings["stripe"]


@pytest.mark.parametrize(
    "args",
    [("--row", "1", "--org", "5b0e7a3c-1d2f-4e6a-9b8c-7d6e5f4a3b2c"), ()],
)
def test_a_resend_without_one_selection_is_refused_before_anything(
    args: tuple[str, ...], cli_stripe_env: Settings
) -> None:
    outcome = resend(*args, "--yes")
    assert outcome.exit_code == 2
    assert "--row" in outcome.stderr
