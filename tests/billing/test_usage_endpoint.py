"""`GET /v1/organizations/{id}/usage` through HTTP: the ledger's figures for a period, and
what happens to the preview when Stripe cannot answer; bad parameters are refused before
anything is read or asked of Stripe."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from sensor_billing.db import SessionFactory
from tests.billing.conftest import Api
from tests.billing.ledger_rows import HOUR, add_report
from tests.support.billing_state import (
    CUSTOMER,
    READINGS,
    SENSORS,
    T0,
    at,
    new_organization,
    send,
    subscription,
)
from tests.support.state import snapshot


async def subscribed(api: Api) -> uuid.UUID:
    org = await new_organization(api.app.state.sessions, CUSTOMER)
    active = subscription("sub_a", "active", prices=[SENSORS, READINGS])
    await send(api.client, "customer.subscription.created", active, T0)
    return org


async def test_the_current_period_answers_from_the_ledger_when_stripe_does_not(
    api: Api, sessions: SessionFactory
) -> None:
    org = await subscribed(api)
    start = at(T0)
    await add_report(sessions, org, "temperature_readings", start, 40)
    await add_report(sessions, org, "temperature_readings", start + HOUR, 2, "pending")
    await add_report(sessions, org, "active_sensors", start, 3)
    # Stripe's address takes the connection and never answers.
    api.app.state.settings = api.app.state.settings.model_copy(
        update={"stripe_preview_timeout_seconds": 0.3}
    )

    answer = await api.client.get(f"/v1/organizations/{org}/usage")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["period"] == {
        "start": "2025-11-24T16:00:00Z",
        "end": "2025-12-24T16:00:00Z",
        "current": True,
    }
    readings, sensors = (
        next(m for m in body["meters"] if m["event_name"] == name)
        for name in ("temperature_readings", "active_sensors")
    )
    assert readings["aggregation"] == "sum"
    assert readings["sent"] == {"rows": 1, "value": 40}
    assert readings["pending"] == {"rows": 1, "value": 2}
    assert sensors["aggregation"] == "last"
    assert sensors["sent"] == {"rows": 1, "value": 3}
    assert body["preview"] == {
        "status": "unavailable",
        "reason": "stripe_timeout",
        "message": "Stripe did not answer within 0.3 s",
        "currency": None,
        "amount_due": None,
        "subtotal": None,
        "total": None,
        "lines": [],
    }
    assert api.stripe.connections() == 1


async def test_a_requested_period_reads_the_ledger_and_asks_stripe_nothing(
    api: Api, sessions: SessionFactory
) -> None:
    org = await subscribed(api)
    start = at(T0) - timedelta(days=30)
    await add_report(sessions, org, "temperature_readings", start, 11)

    answer = await api.client.get(
        f"/v1/organizations/{org}/usage",
        params={"from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat()},
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["period"]["current"] is False
    readings = next(m for m in body["meters"] if m["event_name"] == "temperature_readings")
    assert readings["sent"] == {"rows": 1, "value": 11}
    assert (body["preview"]["status"], body["preview"]["reason"]) == (
        "not_applicable",
        "requested_period",
    )
    assert api.stripe.connections() == 0


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"from": "2026-11-01T00:00:00"}, "query parameter to is missing"),
        ({"from": "2026-11-01T00:00:00", "to": "2026-11-02T00:00:00Z"}, "query parameter from"),
        ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "must be before to"),
        ({"from": "2020-01-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "366 days"),
        ({"period": "previous"}, "query parameter period"),
        ({"from": "x" * 65, "to": "2026-11-01T00:00:00Z"}, "query parameter from"),
    ],
)
async def test_a_malformed_period_is_422_naming_the_parameter_and_nothing_happens(
    api: Api, sessions: SessionFactory, params: dict[str, str], named: str
) -> None:
    org = await subscribed(api)
    before = await snapshot(sessions)

    answer = await api.client.get(f"/v1/organizations/{org}/usage", params=params)

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"
    assert named in answer.json()["error"]["message"]
    assert await snapshot(sessions) == before
    assert api.stripe.connections() == 0


async def test_usage_of_an_unknown_organization_is_404(api: Api) -> None:
    unknown = uuid.uuid4()
    answer = await api.client.get(f"/v1/organizations/{unknown}/usage")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "organization_not_found"
    assert api.stripe.connections() == 0


async def test_the_current_period_of_an_organization_without_a_subscription_is_409(
    api: Api,
) -> None:
    org = await new_organization(api.app.state.sessions, None)
    answer = await api.client.get(f"/v1/organizations/{org}/usage", params={"period": "current"})
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "no_current_period"
    assert api.stripe.connections() == 0


async def test_a_malformed_organization_id_is_422_before_anything_is_read(api: Api) -> None:
    answer = await api.client.get("/v1/organizations/123/usage")
    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith("path parameter organization_id:")
