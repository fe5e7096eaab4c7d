"""A second live subscription with metered prices for one customer, delivered by its
`customer.subscription.created` webhook: logged as a warning, counted on /metrics, and nothing
else changes (no cancel, no Stripe call, the entitlement as it was)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import text

from sensor_billing.db import SessionFactory
from tests.billing.conftest import Api
from tests.observability.conftest import growth, scrape
from tests.support.billing_state import (
    CUSTOMER,
    READINGS,
    SENSORS,
    T0,
    new_organization,
    send,
    subscription,
)

METRIC = "sensor_billing_duplicate_subscriptions_total"
# A subscription to something else the account sells, without metered prices.
LICENSED = {"id": "price_support", "recurring": {"usage_type": "licensed"}}


async def created(
    api: Api, sub_id: str, at: int, prices: list[dict[str, Any]] | None = None
) -> None:
    """`customer.subscription.created` for an active subscription of CUSTOMER from `at`."""
    sub = subscription(sub_id, "active", start=at, prices=prices or [SENSORS, READINGS])
    await send(api.client, "customer.subscription.created", sub, at)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "duplicate subscription" in record.getMessage()
    ]


async def stored_statuses(sessions: SessionFactory) -> dict[str, str]:
    async with sessions() as session:
        rows = await session.execute(text("SELECT id, status FROM stripe_subscriptions"))
        return {row.id: row.status for row in rows}


async def test_a_second_live_metered_subscription_is_logged_and_counted(
    api: Api, sessions: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    organization_id = await new_organization(sessions, CUSTOMER)
    caplog.set_level(logging.INFO, logger="sensor_billing")
    await created(api, "sub_first", T0)
    assert warnings(caplog) == []
    before = await scrape(api.client)

    await created(api, "sub_second", T0 + 60)

    after = await scrape(api.client)
    (warning,) = warnings(caplog)
    assert "duplicate subscription sub_second" in warning
    assert f"customer {CUSTOMER} (organization {organization_id})" in warning
    assert "already has live subscription sub_first" in warning
    assert growth(before, after, METRIC) == 1


async def test_a_second_subscription_changes_nothing_else_and_calls_no_one(
    api: Api, sessions: SessionFactory
) -> None:
    organization_id = await new_organization(sessions, CUSTOMER)
    await created(api, "sub_first", T0)
    api.at(T0 + 3600)
    billing_before = (await api.billing(organization_id)).json()
    assert billing_before["entitlement"]["entitled"] is True

    await created(api, "sub_second", T0 + 60)

    # Both are kept as Stripe says they are; none is canceled, Stripe is not called.
    assert await stored_statuses(sessions) == {"sub_first": "active", "sub_second": "active"}
    # Still entitled as before (the standing's own rule picks which subscription it names).
    billing_after = (await api.billing(organization_id)).json()
    assert billing_after["entitlement"] == billing_before["entitlement"]
    assert api.stripe.connections() == 0


async def test_a_new_subscription_after_the_old_one_ended_is_not_a_duplicate(
    api: Api, sessions: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await new_organization(sessions, CUSTOMER)
    caplog.set_level(logging.INFO, logger="sensor_billing")
    first = subscription("sub_first", "active", prices=[SENSORS, READINGS])
    await send(api.client, "customer.subscription.created", first, T0)
    await send(
        api.client, "customer.subscription.deleted", {**first, "status": "canceled"}, T0 + 30
    )
    before = await scrape(api.client)

    await created(api, "sub_second", T0 + 60)

    assert warnings(caplog) == []
    assert growth(before, await scrape(api.client), METRIC) == 0


async def test_a_second_subscription_without_metered_prices_is_not_a_duplicate(
    api: Api, sessions: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await new_organization(sessions, CUSTOMER)
    caplog.set_level(logging.INFO, logger="sensor_billing")
    await created(api, "sub_first", T0)

    await created(api, "sub_support", T0 + 60, [LICENSED])

    assert warnings(caplog) == []


async def test_a_created_event_arriving_after_its_subscription_was_canceled_is_not_flagged(
    api: Api, sessions: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await new_organization(sessions, CUSTOMER)
    caplog.set_level(logging.INFO, logger="sensor_billing")
    await created(api, "sub_first", T0)
    second = subscription("sub_second", "active", start=T0 + 60, prices=[SENSORS, READINGS])
    # Stripe does not order events: the cancel (by a person who saw the duplicate) came first.
    await send(
        api.client, "customer.subscription.deleted", {**second, "status": "canceled"}, T0 + 120
    )

    await send(api.client, "customer.subscription.created", second, T0 + 60)

    assert warnings(caplog) == []
