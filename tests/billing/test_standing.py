"""An organization's standing comes from the webhooks it received, whatever their order."""

from __future__ import annotations

import uuid

import httpx
import pytest

from sensor_billing.billing.standing import organization_billing
from sensor_billing.db import SessionFactory
from tests.support.billing_state import (
    CUSTOMER,
    GRACE,
    T0,
    at,
    invoice,
    new_organization,
    send,
    subscription,
)


async def test_an_unknown_organization_has_no_standing(sessions: SessionFactory) -> None:
    async with sessions() as session:
        assert await organization_billing(session, uuid.uuid4(), now=at(T0), grace=GRACE) is None


async def test_an_organization_without_a_customer_has_no_subscription(
    sessions: SessionFactory,
) -> None:
    org = await new_organization(sessions, None)
    async with sessions() as session:
        billing = await organization_billing(session, org, now=at(T0), grace=GRACE)
    assert billing is not None
    assert billing.standing.subscription_id is None
    assert (billing.entitlement.entitled, billing.entitlement.reason) == (False, "no_subscription")


async def test_an_active_subscription_entitles_and_reports_its_period_and_prices(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    org = await new_organization(sessions, CUSTOMER)
    await send(client, "customer.subscription.created", subscription("sub_a", "active"), T0)
    async with sessions() as session:
        billing = await organization_billing(session, org, now=at(T0 + 60), grace=GRACE)
    assert billing is not None
    assert billing.standing.subscription_id == "sub_a"
    assert billing.standing.current_period_start == at(T0)
    assert billing.standing.current_period_end == at(T0 + 30 * 86_400)
    assert billing.standing.metered_price_ids == ("price_sensors",)
    assert (billing.entitlement.entitled, billing.entitlement.reason) == (True, "active")


@pytest.mark.parametrize("failures", [[0, 3], [3, 0]], ids=["in-order", "retry-first"])
async def test_the_grace_period_counts_from_the_first_failure_in_any_delivery_order(
    client: httpx.AsyncClient, sessions: SessionFactory, failures: list[int]
) -> None:
    org = await new_organization(sessions, CUSTOMER)
    await send(client, "customer.subscription.updated", subscription("sub_a", "past_due"), T0 + 5)
    # The first payment failed at T0; Stripe's retry three days later failed too.
    for days in failures:
        await send(client, "invoice.payment_failed", invoice("in_1", "sub_a"), T0 + days * 86_400)
    async with sessions() as session:
        inside = await organization_billing(session, org, now=at(T0 + 6 * 86_400), grace=GRACE)
        after = await organization_billing(session, org, now=at(T0 + 7 * 86_400), grace=GRACE)
    assert inside is not None
    assert after is not None
    assert inside.standing.past_due_since == at(T0)
    assert inside.entitlement.entitled is True
    assert inside.entitlement.until == at(T0) + GRACE
    assert (after.entitlement.entitled, after.entitlement.reason) == (
        False,
        "past_due_grace_ended",
    )


async def test_a_past_due_subscription_whose_invoice_event_is_late_counts_from_its_own_event(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    org = await new_organization(sessions, CUSTOMER)
    await send(client, "customer.subscription.updated", subscription("sub_a", "past_due"), T0)
    async with sessions() as session:
        billing = await organization_billing(session, org, now=at(T0 + 60), grace=GRACE)
    assert billing is not None
    assert billing.standing.past_due_since == at(T0)
    assert billing.entitlement.until == at(T0) + GRACE


async def test_a_paid_invoice_no_longer_counts_towards_the_grace_period(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    org = await new_organization(sessions, CUSTOMER)
    await send(client, "invoice.payment_failed", invoice("in_old", "sub_a"), T0)
    await send(client, "invoice.paid", invoice("in_old", "sub_a"), T0 + 86_400)
    # A later period's invoice fails: its own failure starts the grace period.
    later = T0 + 30 * 86_400
    await send(client, "invoice.payment_failed", invoice("in_new", "sub_a"), later)
    await send(client, "customer.subscription.updated", subscription("sub_a", "past_due"), later)
    async with sessions() as session:
        billing = await organization_billing(session, org, now=at(later + 60), grace=GRACE)
    assert billing is not None
    assert billing.standing.past_due_since == at(later)
    assert billing.entitlement.entitled is True


async def test_of_several_subscriptions_the_live_one_decides(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    org = await new_organization(sessions, CUSTOMER)
    await send(client, "customer.subscription.created", subscription("sub_new", "active"), T0 + 9)
    # The old subscription's cancellation arrives after its successor's creation.
    await send(
        client,
        "customer.subscription.deleted",
        subscription("sub_old", "canceled", start=T0 - 30 * 86_400),
        T0 + 10,
    )
    async with sessions() as session:
        billing = await organization_billing(session, org, now=at(T0 + 60), grace=GRACE)
    assert billing is not None
    assert billing.standing.subscription_id == "sub_new"
    assert billing.entitlement.entitled is True


async def test_a_deleted_customer_ends_entitlement(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    org = await new_organization(sessions, CUSTOMER)
    await send(client, "customer.subscription.created", subscription("sub_a", "active"), T0)
    await send(client, "customer.deleted", {"id": CUSTOMER, "object": "customer"}, T0 + 5)
    async with sessions() as session:
        billing = await organization_billing(session, org, now=at(T0 + 60), grace=GRACE)
    assert billing is not None
    assert (billing.entitlement.entitled, billing.entitlement.reason) == (
        False,
        "customer_deleted",
    )
