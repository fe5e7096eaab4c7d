"""Usage so far: the ledger's figures for a billing period and Stripe's invoice preview, read
from real PostgreSQL and asked of Stripe (the stand-in, or nothing) over HTTP."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sensor_billing.billing.usage import (
    PeriodRequest,
    UsageReport,
    attach_preview,
    period_request,
    read_usage,
)
from sensor_billing.db import SessionFactory
from sensor_billing.errors import (
    InvalidParameterError,
    NoBillingPeriodError,
    NoSuchOrganizationError,
)
from sensor_billing.settings import load_settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client
from tests.billing.ledger_rows import HOUR, add_report
from tests.support.billing_state import CUSTOMER, T0, new_organization, send, subscription
from tests.support.net import free_port

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)


async def usage_of(
    sessions: SessionFactory, organization_id: uuid.UUID, request: PeriodRequest
) -> UsageReport:
    async with sessions() as session:
        return await read_usage(session, organization_id, request)


async def subscribed_organization(client: httpx.AsyncClient, sessions: SessionFactory) -> uuid.UUID:
    """An organization whose subscription `sub_a` is active, its period starting at T0."""
    org = await new_organization(sessions, CUSTOMER)
    await send(client, "customer.subscription.created", subscription("sub_a", "active"), T0)
    return org


def figures(report: UsageReport, event_name: str) -> dict[str, tuple[int, int]]:
    meter = next(m for m in report.meters if m.event_name == event_name)
    return {name: (figure.rows, figure.value) for name, figure in meter.figures.items()}


async def test_readings_add_up_per_status_and_rows_outside_the_period_are_left_out(
    sessions: SessionFactory,
) -> None:
    org = await new_organization(sessions, "cus_usage")
    other = await new_organization(sessions, "cus_other")
    readings = "temperature_readings"
    await add_report(sessions, org, readings, START, 10)  # last second in the period: counted
    await add_report(sessions, org, readings, START + HOUR, 20)
    await add_report(sessions, org, readings, START + 2 * HOUR, 5, "pending")
    await add_report(sessions, org, readings, START + 3 * HOUR, 7, "failed")
    await add_report(sessions, org, readings, START + 4 * HOUR, 3, stripe_error_code="x")
    await add_report(sessions, org, readings, START + 5 * HOUR, 99, "cancelled")
    await add_report(sessions, org, readings, START + 6 * HOUR, 0, "skipped")
    # Its last second is before the period (timestamp START - 1 s), and one at the very end.
    await add_report(sessions, org, readings, START - HOUR, 1000)
    await add_report(sessions, org, readings, END, 1000)
    await add_report(sessions, other, readings, START + HOUR, 1000)

    report = await usage_of(sessions, org, PeriodRequest(START, END))

    assert figures(report, readings) == {
        "sent": (2, 30),
        "pending": (1, 5),
        "failed": (1, 7),
        "invalid": (1, 3),
    }


async def test_a_gauge_reports_its_newest_value_not_a_sum(sessions: SessionFactory) -> None:
    org = await new_organization(sessions, "cus_usage")
    sensors = "active_sensors"
    await add_report(sessions, org, sensors, START, 4)
    await add_report(sessions, org, sensors, START + HOUR, 6)
    await add_report(sessions, org, sensors, START + 2 * HOUR, 5)
    await add_report(sessions, org, sensors, START + 3 * HOUR, 8, "pending")

    report = await usage_of(sessions, org, PeriodRequest(START, END))

    assert figures(report, sensors)["sent"] == (3, 5)
    assert figures(report, sensors)["pending"] == (1, 8)
    assert figures(report, "temperature_readings")["sent"] == (0, 0)


async def test_the_current_period_is_the_subscriptions(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    org = await subscribed_organization(client, sessions)
    period_start = datetime.fromtimestamp(T0, UTC)
    await add_report(sessions, org, "temperature_readings", period_start, 12)
    await add_report(sessions, org, "temperature_readings", period_start - HOUR, 500)

    report = await usage_of(sessions, org, PeriodRequest())

    assert (report.period_start, report.period_end) == (
        period_start,
        period_start + timedelta(days=30),
    )
    assert report.current is True
    assert (report.customer_id, report.subscription_id) == (CUSTOMER, "sub_a")
    assert figures(report, "temperature_readings")["sent"] == (1, 12)


async def test_the_current_period_of_an_organization_without_a_subscription_is_refused(
    sessions: SessionFactory,
) -> None:
    org = await new_organization(sessions, None)
    with pytest.raises(NoBillingPeriodError, match="from= and to="):
        await usage_of(sessions, org, PeriodRequest())


async def test_an_unknown_organization_is_refused(sessions: SessionFactory) -> None:
    with pytest.raises(NoSuchOrganizationError):
        await usage_of(sessions, uuid.uuid4(), PeriodRequest(START, END))


@pytest.mark.parametrize(
    ("period", "start", "end", "named"),
    [
        ("last", None, None, "period"),
        ("current", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", "period and from/to"),
        (None, "2026-11-01T00:00:00Z", None, "to is missing"),
        (
            None,
            "2026-11-01T00:00:00",
            "2026-12-01T00:00:00Z",
            "from: '2026-11-01T00:00:00' has no UTC offset",
        ),
        (None, "2026-11-01", "2026-12-01T00:00:00Z", "from"),
        (None, "1700000000", "2026-12-01T00:00:00Z", "from: '1700000000' is not an ISO 8601"),
        (
            None,
            "2026-12-01T00:00:00Z",
            "2026-12-01T00:00:00Z",
            "from (2026-12-01T00:00:00+00:00) must be before to",
        ),
        (None, "2025-01-01T00:00:00Z", "2026-12-01T00:00:00Z", "span more than 366 days"),
    ],
)
def test_a_malformed_period_is_refused_naming_the_parameter(
    period: str | None, start: str | None, end: str | None, named: str
) -> None:
    with pytest.raises(InvalidParameterError, match=re.escape(named)):
        period_request(period, start, end)


def test_from_and_to_are_read_in_utc_whatever_their_offset() -> None:
    request = period_request(None, "2026-11-01T01:00:00+01:00", "2026-11-02T00:00:00Z")
    assert request.start == START
    assert request.start is not None
    assert request.start.utcoffset() == timedelta(0)


async def test_a_requested_period_asks_stripe_for_no_preview(sessions: SessionFactory) -> None:
    org = await new_organization(sessions, "cus_usage")
    report = await usage_of(sessions, org, PeriodRequest(START, END))
    # No client at all: a requested period never reaches Stripe.
    answered = await attach_preview(report, None, wait_seconds=1.0)
    assert (answered.preview.status, answered.preview.reason) == (
        "not_applicable",
        "requested_period",
    )


async def test_the_ledger_still_answers_when_stripe_cannot_be_reached(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    org = await subscribed_organization(client, sessions)
    await add_report(sessions, org, "temperature_readings", datetime.fromtimestamp(T0, UTC), 12)
    report = await usage_of(sessions, org, PeriodRequest())
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    settings = load_settings(
        stripe_api_key="sk_test_unreachable",
        stripe_api_base=nothing_listens,
        stripe_meter_events_base=nothing_listens,
    )
    http = create_http_client(timeout=5.0)
    try:
        answered = await attach_preview(
            report, create_stripe_client(settings, http_client=http), wait_seconds=5.0
        )
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in the SDK
    assert (answered.preview.status, answered.preview.reason) == (
        "unavailable",
        "stripe_unavailable",
    )
    assert figures(answered, "temperature_readings")["sent"] == (1, 12)


async def test_without_a_stripe_key_the_preview_is_unavailable(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    org = await subscribed_organization(client, sessions)
    report = await usage_of(sessions, org, PeriodRequest())
    answered = await attach_preview(report, None, wait_seconds=1.0)
    assert (answered.preview.status, answered.preview.reason) == (
        "unavailable",
        "stripe_not_configured",
    )
