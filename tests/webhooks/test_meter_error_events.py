"""Thin meter error events at POST /webhooks/stripe: verified, fetched from the stand-in through
the SDK, recorded once, and the ledger rows they name marked with Stripe's error code."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.devtools.stripe_standin import (
    DEFAULT_API_KEY,
    FaultPlan,
    RunningStandin,
    StandinConfig,
)
from sensor_billing.metering.meter_errors import ErrorType, sampled_identifiers
from sensor_billing.settings import Settings, load_settings
from tests.support.app import running_app
from tests.support.stripe_events import deliver, make_event

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)

SECRET = "whsec_meter_error_secret"
WINDOW_START = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.fixture
def settings(database_url: str, redis_url: str, standin: RunningStandin) -> Settings:
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        stripe_webhook_secret=SECRET,
        stripe_api_key=DEFAULT_API_KEY,
        stripe_api_base=standin.url,
        stripe_meter_events_base=standin.url,
    )


@pytest.fixture
async def client(settings: Settings, sessions: SessionFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as (_, client):
        yield client


@pytest.fixture
async def stripe_client(standin: RunningStandin) -> AsyncIterator[stripe.StripeClient]:
    standin.state.configure(StandinConfig(strict_customers=True))
    http = stripe.HTTPXClient(timeout=5)
    yield stripe.StripeClient(
        DEFAULT_API_KEY,
        http_client=http,
        base_addresses={"api": standin.url, "meter_events": standin.url},
    )
    await http.close_async()  # type: ignore[no-untyped-call]


async def sent_ledger_row(sessions: SessionFactory, customer: str = "cus_unknown") -> str:
    """An organization and one sent ledger row of it; returns the row's identifier."""
    organization = uuid.uuid4()
    identifier = f"sb.{organization}.temperature_readings.{int(WINDOW_START.timestamp())}"
    async with unit_of_work(sessions) as session:
        await session.execute(
            text("INSERT INTO organizations (id, name, stripe_customer_id) VALUES (:id, 'O', :c)"),
            {"id": organization, "c": customer},
        )
        await session.execute(
            text(
                "INSERT INTO meter_reports (organization_id, event_name, window_start, window_end,"
                " value, stripe_customer_id, identifier, status, sent_at, attempts)"
                " VALUES (:org, 'temperature_readings', :start, :end, 42, :c, :identifier,"
                " 'sent', now(), 1)"
            ),
            {
                "org": organization,
                "start": WINDOW_START,
                "end": WINDOW_START + timedelta(days=1),
                "c": customer,
                "identifier": identifier,
            },
        )
    return identifier


async def send_usage(
    stripe_client: stripe.StripeClient,
    identifier: str,
    *,
    customer: str = "cus_unknown",
    event_name: str = "temperature_readings",
) -> None:
    await stripe_client.v1.billing.meter_events.create_async(
        {
            "event_name": event_name,
            "payload": {"stripe_customer_id": customer, "value": "42"},
            "identifier": identifier,
        }
    )


def last_notification(standin: RunningStandin) -> dict[str, Any]:
    return standin.state.thin_events()[-1].to_notification()


def thin_event(event_id: str, event_type: str, **changes: Any) -> dict[str, Any]:
    """A thin event built by hand, for ids and shapes the stand-in would not send."""
    return {
        "id": event_id,
        "object": "v2.core.event",
        "type": event_type,
        "created": "2026-11-27T16:00:00.000Z",
        "livemode": False,
        "context": None,
        **changes,
    }


async def refused_usage(
    sessions: SessionFactory, stripe_client: stripe.StripeClient, standin: RunningStandin
) -> dict[str, Any]:
    """A sent ledger row whose usage Stripe then refuses; returns the stand-in's thin event."""
    await send_usage(stripe_client, await sent_ledger_row(sessions))
    return last_notification(standin)


async def rows(sessions: SessionFactory, sql: str) -> list[tuple[Any, ...]]:
    async with sessions() as session:
        return [tuple(row) for row in await session.execute(text(sql))]


LEDGER_ERROR = (
    "SELECT stripe_error_code, stripe_error_message, stripe_error_event_id FROM meter_reports"
)
REPORTS = "SELECT code, error_count, organization_id, meter_id FROM meter_error_reports"
EVENTS = "SELECT event_id, event_type FROM stripe_events"


async def test_an_error_report_marks_the_row_it_names_with_stripes_code(
    client: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_client: stripe.StripeClient,
) -> None:
    identifier = await sent_ledger_row(sessions)
    await send_usage(stripe_client, identifier)
    notification = last_notification(standin)

    answer = await deliver(client, notification, secret=SECRET)

    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "processed"
    [(code, message, event_id)] = await rows(sessions, LEDGER_ERROR)
    assert (code, event_id) == ("meter_event_customer_not_found", notification["id"])
    assert "cus_unknown" in message
    [(report_code, count, organization, meter)] = await rows(sessions, REPORTS)
    assert (report_code, count, meter) == (code, 1, notification["related_object"]["id"])
    assert str(organization) in identifier
    assert await rows(sessions, EVENTS) == [
        (notification["id"], "v1.billing.meter.error_report_triggered")
    ]


async def test_a_duplicate_delivery_changes_nothing(
    client: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_client: stripe.StripeClient,
) -> None:
    notification = await refused_usage(sessions, stripe_client, standin)
    await deliver(client, notification, secret=SECRET)
    before = await rows(sessions, "SELECT * FROM meter_reports"), await rows(sessions, REPORTS)

    again = await deliver(client, notification, secret=SECRET)

    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    after = await rows(sessions, "SELECT * FROM meter_reports"), await rows(sessions, REPORTS)
    assert after == before
    assert len(await rows(sessions, EVENTS)) == 1


async def test_a_failed_fetch_answers_5xx_records_nothing_and_the_redelivery_applies(
    client: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_client: stripe.StripeClient,
) -> None:
    notification = await refused_usage(sessions, stripe_client, standin)
    standin.state.set_faults(FaultPlan(server_error=1.0))

    failed = await deliver(client, notification, secret=SECRET)

    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "event_fetch_failed"
    assert await rows(sessions, EVENTS) == []
    assert await rows(sessions, REPORTS) == []
    assert await rows(sessions, LEDGER_ERROR) == [(None, None, None)]

    standin.state.set_faults(FaultPlan())
    retried = await deliver(client, notification, secret=SECRET)
    assert retried.json()["outcome"] == "processed"
    assert (await rows(sessions, LEDGER_ERROR))[0][0] == "meter_event_customer_not_found"


async def test_an_event_stripe_does_not_have_answers_5xx(
    client: httpx.AsyncClient, sessions: SessionFactory, standin: RunningStandin
) -> None:
    notification = thin_event("evt_test_never_created", "v1.billing.meter.no_meter_found")

    answer = await deliver(client, notification, secret=SECRET)

    assert answer.status_code == 502
    assert "404" in answer.json()["error"]["message"]
    assert await rows(sessions, EVENTS) == []


async def test_a_bad_signature_is_refused_and_writes_nothing(
    client: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_client: stripe.StripeClient,
) -> None:
    notification = await refused_usage(sessions, stripe_client, standin)

    answer = await deliver(client, notification, secret="whsec_someone_else")

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "signature_mismatch"
    assert await rows(sessions, EVENTS) == []
    assert await rows(sessions, LEDGER_ERROR) == [(None, None, None)]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"created": 1764259200}, "created"),
        ({"created": "2026-11-27T16:00:00"}, "created"),  # no offset: not RFC 3339
        ({"type": None}, "type"),
        ({"id": ""}, "id"),
        ({"related_object": {"id": "mtr_1"}}, "related_object"),
    ],
)
async def test_a_malformed_thin_event_is_refused_with_a_reason(
    client: httpx.AsyncClient, sessions: SessionFactory, change: dict[str, Any], reason: str
) -> None:
    notification = thin_event(
        "evt_test_malformed", "v1.billing.meter.error_report_triggered", **change
    )

    answer = await deliver(client, notification, secret=SECRET)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_event"
    assert reason in error["message"]
    assert await rows(sessions, EVENTS) == []


async def test_no_meter_found_for_an_unknown_identifier_is_kept_without_an_organization(
    client: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_client: stripe.StripeClient,
) -> None:
    await send_usage(stripe_client, "not-ours", event_name="nobody_meters_this")
    notification = last_notification(standin)

    answer = await deliver(client, notification, secret=SECRET)

    assert answer.json()["outcome"] == "processed"
    assert await rows(sessions, REPORTS) == [("no_meter", 1, None, None)]


async def test_an_older_verdict_never_overwrites_a_newer_one(
    client: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_client: stripe.StripeClient,
) -> None:
    identifier = await sent_ledger_row(sessions)
    await send_usage(stripe_client, identifier)
    older = last_notification(standin)
    # Stripe keeps an identifier for 24 h; after that it is accepted (and judged) again.
    standin.state.clock.advance(25 * 3600)
    await send_usage(stripe_client, identifier, event_name="nobody_meters_this")
    newer = last_notification(standin)

    await deliver(client, newer, secret=SECRET)
    await deliver(client, older, secret=SECRET)

    [(code, _, event_id)] = await rows(sessions, LEDGER_ERROR)
    assert (code, event_id) == ("no_meter", newer["id"])
    assert len(await rows(sessions, REPORTS)) == 2


async def test_other_thin_event_types_are_recorded_without_a_fetch(
    client: httpx.AsyncClient, sessions: SessionFactory, standin: RunningStandin
) -> None:
    standin.state.set_faults(FaultPlan(server_error=1.0))  # a fetch would fail
    notification = {
        "id": "evt_test_meter_created",
        "object": "v2.core.event",
        "type": "v1.billing.meter.created",
        "created": "2026-11-27T16:00:00.000Z",
        "livemode": False,
        "context": None,
        "related_object": {
            "id": "mtr_1",
            "type": "billing.meter",
            "url": "/v1/billing/meters/mtr_1",
        },
    }

    answer = await deliver(client, notification, secret=SECRET)

    assert (answer.status_code, answer.json()["effect"]) == (200, "ignored")
    assert await rows(sessions, EVENTS) == [("evt_test_meter_created", "v1.billing.meter.created")]


async def test_without_an_api_key_a_meter_error_event_answers_5xx(
    database_url: str, redis_url: str, sessions: SessionFactory
) -> None:
    settings = load_settings(
        database_url=database_url, redis_url=redis_url, stripe_webhook_secret=SECRET
    )
    notification = thin_event("evt_test_unfetchable", "v1.billing.meter.no_meter_found")
    async with running_app(settings) as (_, client):
        answer = await deliver(client, notification, secret=SECRET)

    assert answer.status_code == 502
    assert "STRIPE_API_KEY" in answer.json()["error"]["message"]
    assert await rows(sessions, EVENTS) == []


async def test_snapshot_events_still_take_their_own_path(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    event = make_event("customer.updated", {"id": "cus_1", "object": "customer"}, created=1)

    answer = await deliver(client, event, secret=SECRET)

    assert answer.json()["outcome"] == "processed"
    assert json.loads(answer.text)["effect"] == "ignored"


def test_a_sample_naming_our_idempotency_key_names_the_row_too() -> None:
    error_type = ErrorType.model_validate(
        {
            "code": "meter_event_invalid_value",
            "error_count": 2,
            "sample_errors": [
                {"error_message": "bad", "request": {"identifier": "meter-event-sb.a.b.1"}},
                {"error_message": "bad", "request": {"identifier": "sb.c.d.2"}},
                # A retry's key (the third attempt) names the same row.
                {"error_message": "bad", "request": {"identifier": "meter-event-sb.e.f.3.retry2"}},
            ],
        }
    )

    assert sampled_identifiers(error_type) == {
        "meter-event-sb.a.b.1",
        "sb.a.b.1",
        "sb.c.d.2",
        "meter-event-sb.e.f.3.retry2",
        "sb.e.f.3",
    }
