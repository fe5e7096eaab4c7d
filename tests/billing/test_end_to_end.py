"""The product's whole billing loop through HTTP, against real PostgreSQL and Redis, the app
served by uvicorn and the Stripe stand-in in its own server: a service key, a Checkout Session,
the stand-in completing it and delivering signed webhooks, `GET /billing` entitled, the demo's
readings metered and reported by the worker, and `GET /usage` whose invoice preview is the
accepted usage times the prices, to the cent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
import stripe

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.demo import (
    DemoSensor,
    insert_readings_forever,
    seed_demo_organizations,
)
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.jobs.worker import MeteringWorker
from sensor_billing.service_keys import issue_service_key
from sensor_billing.settings import Settings
from sensor_billing.stripe_api.client import create_http_client
from sensor_billing.stripe_api.setup import SetupOptions, set_up_stripe
from tests.metering.conftest import FAST_JOB_OPTIONS, drain
from tests.support.app import serving_app
from tests.webhooks.conftest import SECRET

# Cents per reading: a price whose lines do not come out whole, so the preview's rounding (half
# up, per line) is part of what is checked.
READING_CENTS = Decimal("2.5")
SENSOR_CENTS = Decimal(500)
DEMO_SECONDS = 3.0


@pytest.fixture
def loop_settings(standin_settings: Settings) -> Settings:
    # One-second windows with no grace: the demo's readings are closed and reported within
    # seconds, and their timestamps stay inside the subscription's first period.
    return standin_settings.model_copy(
        update={
            "meter_window_seconds": 1,
            "meter_grace_seconds": 0,
            "meter_rate_limit_per_second": 1000,
            "meter_stream_threshold": 1_000_000,
        }
    )


@pytest.fixture
async def stripe_set_up(stripe_client: stripe.StripeClient) -> None:
    """`stripe setup` against the stand-in: the two meters, the product, its prices."""
    options = SetupOptions(
        currency="eur",
        unit_amounts={"active_sensors": SENSOR_CENTS, "temperature_readings": READING_CENTS},
    )
    await set_up_stripe(stripe_client, options)


@pytest.fixture
async def api(
    loop_settings: Settings, standin: RunningStandin, sessions: SessionFactory, stripe_set_up: None
) -> AsyncIterator[httpx.AsyncClient]:
    """The SaaS backend's view: the served app, called with a service key; the stand-in
    delivers its webhooks to the same app."""
    key = await issue_service_key(sessions, "saas-backend")
    with serving_app(loop_settings) as url:
        async with httpx.AsyncClient(base_url=standin.url, timeout=30) as control:
            registered = await control.post(
                "/_standin/webhook_endpoints",
                json={"url": f"{url}/webhooks/stripe", "secret": SECRET, "enabled_events": ["*"]},
            )
            assert registered.status_code == 200, registered.text
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as client:
            yield client


async def subscribe(api: httpx.AsyncClient, standin: RunningStandin, org: uuid.UUID) -> None:
    """What the backend and the customer do: a Checkout Session, paid in the stand-in."""
    made = await api.post(
        f"/v1/organizations/{org}/checkout-sessions",
        json={"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert made.status_code == 201, made.text
    async with httpx.AsyncClient(base_url=standin.url, timeout=30) as control:
        paid = await control.post(
            f"/_standin/checkout_sessions/{made.json()['id']}/complete", json={"deliver": True}
        )
    assert paid.status_code == 200, paid.text
    # The control route answers once the app has answered every delivery.
    deliveries = paid.json()["deliveries"]
    assert deliveries
    assert all(delivery["status"] == 200 for delivery in deliveries), deliveries


async def meter(settings: Settings, sessions: SessionFactory, sensors: list[DemoSensor]) -> None:
    """The demo's readings for DEMO_SECONDS, then the worker closes every window and reports
    it (as `dev --demo` and the worker do)."""
    stop = asyncio.Event()
    readings = asyncio.create_task(insert_readings_forever(sessions, sensors, stop, 0.2))
    await asyncio.sleep(DEMO_SECONDS)
    stop.set()
    await readings
    await asyncio.sleep(1.1)  # the last reading's window ends
    worker = MeteringWorker(
        settings,
        http_client=create_http_client(timeout=5.0),
        job_options=FAST_JOB_OPTIONS,
        revive_after=timedelta(0),
    )
    try:
        await worker.start()
        await drain(worker, sessions)
    finally:
        await worker.stop()


def line_cents(quantity: int, unit_cents: Decimal) -> int:
    # Stripe multiplies, then rounds each line to a whole cent, half up (docs:
    # billing/subscriptions/decimal-amounts).
    return int((quantity * unit_cents).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def by_event_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["event_name"]: item for item in items}


async def test_checkout_webhooks_usage_and_the_invoice_preview_agree_to_the_cent(
    api: httpx.AsyncClient,
    standin: RunningStandin,
    loop_settings: Settings,
    sessions: SessionFactory,
) -> None:
    # The demo's organization and sensors; no Stripe customer yet.
    sensors_of_demo = await seed_demo_organizations(sessions, [None])
    org = sensors_of_demo[0].organization_id
    before = (await api.get(f"/v1/organizations/{org}/billing")).json()
    assert before["entitlement"] == {"entitled": False, "reason": "no_subscription", "until": None}

    await subscribe(api, standin, org)

    billing = await api.get(f"/v1/organizations/{org}/billing")
    assert billing.status_code == 200, billing.text
    body = billing.json()
    assert body["entitlement"] == {"entitled": True, "reason": "active", "until": None}
    assert body["subscription"]["status"] == "active"
    prices = by_event_name(body["prices"])
    assert prices["active_sensors"]["unit_amount"] == 500
    assert prices["temperature_readings"]["unit_amount_decimal"] == "2.5"
    assert {price["currency"] for price in body["prices"]} == {"eur"}

    await asyncio.sleep(1.0)  # readings start in a window after the subscription's start
    await meter(loop_settings, sessions, sensors_of_demo)

    usage = await api.get(f"/v1/organizations/{org}/usage")
    assert usage.status_code == 200, usage.text
    answer = usage.json()
    meters = by_event_name(answer["meters"])
    readings = meters["temperature_readings"]["sent"]["value"]
    sensors = meters["active_sensors"]["sent"]["value"]
    assert readings > 0
    assert sensors == 3  # the demo's three sensors, all active
    for meter_usage in meters.values():
        assert meter_usage["failed"] == {"rows": 0, "value": 0}
        assert meter_usage["invalid"] == {"rows": 0, "value": 0}
    preview = answer["preview"]
    assert preview["status"] == "available", preview
    assert preview["currency"] == "eur"
    expected = {
        "active_sensors": line_cents(sensors, SENSOR_CENTS),
        "temperature_readings": line_cents(readings, READING_CENTS),
    }
    lines = by_event_name(preview["lines"])
    assert {name: line["amount"] for name, line in lines.items()} == expected
    assert {name: line["quantity"] for name, line in lines.items()} == {
        "active_sensors": sensors,
        "temperature_readings": readings,
    }
    assert preview["amount_due"] == sum(expected.values())
