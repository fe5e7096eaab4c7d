"""`GET /v1/organizations/{id}/billing` through HTTP: the entitlement, the subscription and its
prices, from the state webhooks left in PostgreSQL; never a call to Stripe."""

from __future__ import annotations

import uuid

from tests.billing.conftest import Api
from tests.support.billing_state import (
    CUSTOMER,
    READINGS,
    SENSORS,
    T0,
    invoice,
    new_organization,
    send,
    subscription,
)

DAY = 86_400


async def test_an_active_subscription_is_entitled_with_its_period_and_prices(api: Api) -> None:
    org = await new_organization(api.app.state.sessions, CUSTOMER)
    active = subscription("sub_a", "active", prices=[SENSORS, READINGS])
    await send(api.client, "customer.subscription.created", active, T0)
    api.at(T0 + DAY)

    answer = await api.billing(org)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "organization_id": str(org),
        "stripe_customer_id": CUSTOMER,
        "entitlement": {"entitled": True, "reason": "active", "until": None},
        "subscription": {
            "id": "sub_a",
            "status": "active",
            "current_period": {
                "start": "2025-11-24T16:00:00Z",
                "end": "2025-12-24T16:00:00Z",
            },
            "cancel_at_period_end": False,
            "past_due_since": None,
        },
        "prices": [
            {
                "id": "price_readings",
                "event_name": "temperature_readings",
                "meter_id": "mtr_temperature_readings",
                "currency": "eur",
                "unit_amount": None,
                "unit_amount_decimal": "0.01",
            },
            {
                "id": "price_sensors",
                "event_name": "active_sensors",
                "meter_id": "mtr_active_sensors",
                "currency": "eur",
                "unit_amount": 500,
                "unit_amount_decimal": "500",
            },
        ],
    }
    assert api.stripe.connections() == 0


async def test_entitlement_ends_when_the_grace_period_does_as_the_clock_moves(api: Api) -> None:
    org = await new_organization(api.app.state.sessions, CUSTOMER)
    late = subscription("sub_a", "past_due", prices=[SENSORS])
    await send(api.client, "customer.subscription.updated", late, T0 + 60)
    await send(api.client, "invoice.payment_failed", invoice("in_1", "sub_a"), T0)

    api.at(T0 + 7 * DAY - 1)
    inside = (await api.billing(org)).json()
    api.at(T0 + 7 * DAY)
    after = (await api.billing(org)).json()

    assert inside["entitlement"] == {
        "entitled": True,
        "reason": "past_due_grace",
        "until": "2025-12-01T16:00:00Z",
    }
    assert inside["subscription"]["past_due_since"] == "2025-11-24T16:00:00Z"
    assert after["entitlement"] == {
        "entitled": False,
        "reason": "past_due_grace_ended",
        "until": None,
    }


async def test_a_subscription_set_to_cancel_is_entitled_until_its_period_ends(api: Api) -> None:
    org = await new_organization(api.app.state.sessions, CUSTOMER)
    ending = subscription("sub_a", "active", prices=[SENSORS], cancel_at_period_end=True)
    await send(api.client, "customer.subscription.updated", ending, T0)
    api.at(T0)

    answer = (await api.billing(org)).json()

    assert answer["entitlement"]["until"] == answer["subscription"]["current_period"]["end"]
    assert answer["subscription"]["cancel_at_period_end"] is True


async def test_an_organization_that_never_subscribed_is_not_entitled(api: Api) -> None:
    org = await new_organization(api.app.state.sessions, None)

    answer = await api.billing(org)

    assert answer.status_code == 200
    assert answer.json() == {
        "organization_id": str(org),
        "stripe_customer_id": None,
        "entitlement": {"entitled": False, "reason": "no_subscription", "until": None},
        "subscription": None,
        "prices": [],
    }


async def test_a_price_no_event_described_in_full_is_listed_by_its_id(api: Api) -> None:
    org = await new_organization(api.app.state.sessions, CUSTOMER)
    # Only the price's id and usage type: nothing to tell its amount from.
    await send(api.client, "customer.subscription.created", subscription("sub_a", "active"), T0)

    answer = (await api.billing(org)).json()

    assert answer["prices"] == [
        {
            "id": "price_sensors",
            "event_name": None,
            "meter_id": None,
            "currency": None,
            "unit_amount": None,
            "unit_amount_decimal": None,
        }
    ]


async def test_an_unknown_organization_is_404(api: Api) -> None:
    unknown = uuid.uuid4()

    answer = await api.billing(unknown)

    assert answer.status_code == 404
    assert answer.json() == {
        "error": {"code": "organization_not_found", "message": f"no organization {unknown}"}
    }


async def test_a_malformed_organization_id_is_422_naming_it(api: Api) -> None:
    answer = await api.billing("not-a-uuid")

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("path parameter organization_id:")
    assert api.stripe.connections() == 0


async def test_without_a_service_key_nothing_is_answered(api: Api) -> None:
    org = await new_organization(api.app.state.sessions, CUSTOMER)
    for path in (f"/v1/organizations/{org}/billing", f"/v1/organizations/{org}/usage"):
        answer = await api.client.get(path, headers={"Authorization": "Bearer sbk_not_a_key"})
        assert answer.status_code == 401, path
        assert answer.json()["error"]["code"] == "unauthorized"
