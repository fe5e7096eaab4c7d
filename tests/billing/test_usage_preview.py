"""`GET /v1/organizations/{id}/usage` with Stripe's invoice preview from the stand-in over HTTP:
the preview's figures when Stripe answers, and the ledger's alone, the preview marked
unavailable with the reason, when it fails, refuses or does not answer in time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import stripe

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import (
    FaultPlan,
    RunningStandin,
)
from sensor_billing.devtools.stripe_standin.faults import FaultTarget
from sensor_billing.stripe_api.setup import SetupOptions, SetupResult, set_up_stripe
from tests.billing.conftest import Api
from tests.billing.ledger_rows import add_report
from tests.billing.stripe_subscriptions import subscribe_in_standin

INVOICES = (FaultTarget.INVOICES,)
SENSOR_CENTS = Decimal(500)
READING_CENTS = Decimal("0.5")


async def subscribed_in_stripe(
    api: Api, client: stripe.StripeClient, standin: RunningStandin, sessions: SessionFactory
) -> tuple[uuid.UUID, str, SetupResult]:
    """`stripe setup`, a customer, a Checkout Session paid in the stand-in, and the stand-in's
    own subscription event delivered (signed) to the app; the organization, its customer."""
    setup = await set_up_stripe(
        client,
        SetupOptions(
            unit_amounts={"active_sensors": SENSOR_CENTS, "temperature_readings": READING_CENTS}
        ),
    )
    subscribed = await subscribe_in_standin(api, client, standin, sessions, setup)
    return subscribed.organization_id, subscribed.customer_id, setup


async def send_usage(client: stripe.StripeClient, customer: str, name: str, value: int) -> None:
    await client.v1.billing.meter_events.create_async(
        {
            "event_name": name,
            "payload": {"stripe_customer_id": customer, "value": str(value)},
            "identifier": f"test-{uuid.uuid4()}",
        }
    )


async def test_the_preview_is_what_stripe_would_bill_the_period_so_far(
    standin_api: Api,
    stripe_client: stripe.StripeClient,
    standin: RunningStandin,
    sessions: SessionFactory,
) -> None:
    org, customer, setup = await subscribed_in_stripe(standin_api, stripe_client, standin, sessions)
    await send_usage(stripe_client, customer, "active_sensors", 4)
    await send_usage(stripe_client, customer, "temperature_readings", 301)
    await add_report(sessions, org, "temperature_readings", datetime.now(UTC), 301)

    answer = await standin_api.client.get(f"/v1/organizations/{org}/usage")

    assert answer.status_code == 200, answer.text
    preview = answer.json()["preview"]
    assert (preview["status"], preview["currency"]) == ("available", "eur")
    # 4 x 500 = 2000; 301 x 0.5 = 150.5, rounded half up per line to 151.
    assert preview["amount_due"] == 2000 + 151
    assert sorted(
        (line["event_name"], line["price_id"], line["quantity"], line["amount"])
        for line in preview["lines"]
    ) == [
        ("active_sensors", setup.id_of("price", "active_sensors"), 4, 2000),
        ("temperature_readings", setup.id_of("price", "temperature_readings"), 301, 151),
    ]


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        (
            FaultPlan(timeout=1.0, timeout_seconds=3.0, targets=(FaultTarget.INVOICES,)),
            "stripe_timeout",
        ),
        (FaultPlan(server_error=1.0, targets=(FaultTarget.INVOICES,)), "stripe_unavailable"),
        (FaultPlan(rate_limited=1.0, targets=(FaultTarget.INVOICES,)), "stripe_unavailable"),
    ],
    ids=["timeout", "server-error", "rate-limited"],
)
async def test_when_stripe_fails_the_ledger_still_answers_with_the_preview_unavailable(
    standin_api: Api,
    stripe_client: stripe.StripeClient,
    standin: RunningStandin,
    sessions: SessionFactory,
    plan: FaultPlan,
    reason: str,
) -> None:
    org, _, _ = await subscribed_in_stripe(standin_api, stripe_client, standin, sessions)
    await add_report(sessions, org, "temperature_readings", datetime.now(UTC), 42)
    standin.state.set_faults(plan)
    standin_api.app.state.settings = standin_api.app.state.settings.model_copy(
        update={"stripe_preview_timeout_seconds": 1.0}
    )

    answer = await standin_api.client.get(f"/v1/organizations/{org}/usage")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["preview"]["status"], body["preview"]["reason"]) == ("unavailable", reason)
    assert body["preview"]["amount_due"] is None
    readings = next(m for m in body["meters"] if m["event_name"] == "temperature_readings")
    assert readings["sent"] == {"rows": 1, "value": 42}


async def test_a_subscription_stripe_has_nothing_to_bill_for_is_a_refused_preview(
    standin_api: Api,
    stripe_client: stripe.StripeClient,
    standin: RunningStandin,
    sessions: SessionFactory,
) -> None:
    org, customer, _ = await subscribed_in_stripe(standin_api, stripe_client, standin, sessions)
    [subscription] = (await stripe_client.v1.subscriptions.list_async({"customer": customer})).data
    # Canceled in Stripe; its event has not arrived, so the ledger's period still stands.
    await stripe_client.v1.subscriptions.cancel_async(subscription.id)

    answer = await standin_api.client.get(f"/v1/organizations/{org}/usage")

    assert answer.status_code == 200, answer.text
    preview = answer.json()["preview"]
    assert (preview["status"], preview["reason"]) == ("unavailable", "stripe_refused")
    assert "no upcoming invoice" in preview["message"].lower()
