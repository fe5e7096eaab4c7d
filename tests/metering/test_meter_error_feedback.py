"""End to end: usage for a customer Stripe does not know comes back as a thin meter error event,
and the ledger, `usage ledger` and /metrics show Stripe's error code.

Real pieces throughout: the worker reports to the stand-in over HTTP, the stand-in POSTs signed
thin events to the app served by uvicorn, the app fetches the full events from the stand-in
through the stripe SDK and marks the ledger in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import text

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import Customer, RunningStandin
from sensor_billing.settings import Settings
from tests.cli.conftest import run_cli
from tests.metering.conftest import drain
from tests.observability.conftest import Samples, growth, value
from tests.support.app import serving_app
from tests.support.usage_data import GeneratedOrganization, generate_usage

SECRET = "whsec_feedback_end_to_end"
CODE = "meter_event_customer_not_found"
ROWS_WITH_ERROR = "sensor_billing_ledger_rows_with_stripe_error"
METER_ERRORS = "sensor_billing_stripe_meter_errors_total"

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


@pytest.fixture
def app_url(worker_settings: Settings) -> Iterator[str]:
    settings = worker_settings.model_copy(update={"stripe_webhook_secret": [SecretStr(SECRET)]})
    with serving_app(settings) as url:
        yield url


async def scrape(app_url: str) -> Samples:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{app_url}/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def marked_rows(sessions: SessionFactory) -> dict[str, str | None]:
    async with sessions() as session:
        rows = await session.execute(
            text("SELECT identifier, stripe_error_code FROM meter_reports WHERE status = 'sent'")
        )
        return {identifier: code for identifier, code in rows}


async def wait_until_every_event_is_delivered(standin: RunningStandin, within: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        delivered = {d.event_id for d in standin.state.event_deliveries() if d.succeeded}
        if {event.id for event in standin.state.thin_events()} <= delivered:
            return
        assert loop.time() < deadline, standin.state.event_deliveries()
        await asyncio.sleep(0.1)


async def test_usage_stripe_refuses_later_is_marked_in_the_ledger_cli_and_metrics(
    sessions: SessionFactory,
    standin: RunningStandin,
    make_worker: Any,
    app_url: str,
    database_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime.now(UTC)
    known, unknown = await generate_usage(
        sessions, organizations=2, start=now - timedelta(days=2), end=now, readings_per_org=30
    )
    assert known.customer_id
    with standin.state.lock:  # Stripe knows one customer only (strict customers from now on)
        standin.state.customers[known.customer_id] = Customer(known.customer_id, created=0)
    async with httpx.AsyncClient(base_url=standin.url) as control:
        answer = await control.post(
            "/_standin/event_destination",
            json={"url": f"{app_url}/webhooks/stripe", "secret": SECRET},
        )
        assert answer.status_code == 200
    before = await scrape(app_url)

    worker = make_worker()
    await worker.start()
    await drain(worker, sessions)
    await wait_until_every_event_is_delivered(standin)

    # The ledger: every sent row of the unknown customer carries Stripe's code, no other row.
    marked = await marked_rows(sessions)
    expected = {i: CODE if str(unknown.id) in i else None for i in marked}
    assert marked == expected
    refused = sum(1 for code in marked.values() if code == CODE)
    events = standin.state.thin_events()
    assert refused == len(events) > 0
    assert all(d.status == 200 for d in standin.state.event_deliveries())

    # /metrics: the gauge counts the marked rows, the counter the reported invalid events.
    after = await scrape(app_url)
    assert value(after, ROWS_WITH_ERROR, code=CODE) == refused
    assert growth(before, after, METER_ERRORS, code=CODE) == refused

    # `usage ledger`: the code in the table and in JSON.
    ledger = ledger_cli(monkeypatch, database_url, redis_url, unknown)
    assert ledger["table"].count(CODE) == refused
    assert {row["stripeErrorCode"] for row in ledger["json"] if row["status"] == "sent"} == {CODE}

    # Stripe delivers an event again: nothing changes.
    async with sessions() as session:
        ledger_before = (await session.execute(text("SELECT * FROM meter_reports"))).all()
        reports_before = (await session.execute(text("SELECT * FROM meter_error_reports"))).all()
    async with httpx.AsyncClient(base_url=standin.url, timeout=30) as control:
        again = await control.post("/_standin/deliver_events", json={"event_ids": [events[0].id]})
    assert again.json()["deliveries"][0]["status"] == 200
    async with sessions() as session:
        assert (await session.execute(text("SELECT * FROM meter_reports"))).all() == ledger_before
        reports = (await session.execute(text("SELECT * FROM meter_error_reports"))).all()
        assert reports == reports_before
        stripe_events = await session.scalar(text("SELECT count(*) FROM stripe_events"))
    assert stripe_events == len(events)
    assert growth(after, await scrape(app_url), METER_ERRORS, code=CODE) == 0


def ledger_cli(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    redis_url: str,
    organization: GeneratedOrganization,
) -> dict[str, Any]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    table = run_cli("usage", "ledger", "--org", str(organization.id))
    as_json = run_cli("usage", "ledger", "--org", str(organization.id), "--json")
    assert table.exit_code == 0, table.stderr
    assert as_json.exit_code == 0, as_json.stderr
    return {"table": table.stdout, "json": json.loads(as_json.stdout)}
