"""An organization's standing comes from the webhooks it received, whatever their order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sensor_billing.billing.standing import organization_billing
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import Organization
from tests.support.stripe_events import deliver, make_event
from tests.webhooks.conftest import SECRET

T0 = 1_764_000_000  # 2025-11-24
GRACE = timedelta(days=7)
CUSTOMER = "cus_standing"


async def new_organization(sessions: SessionFactory, customer_id: str | None) -> uuid.UUID:
    async with unit_of_work(sessions) as session:
        organization = Organization(name="Polar Freight", stripe_customer_id=customer_id)
        session.add(organization)
        await session.flush()
        return organization.id


def subscription(sub_id: str, status: str, *, start: int = T0) -> dict[str, Any]:
    item = {
        "id": f"si_{sub_id}",
        "object": "subscription_item",
        "current_period_start": start,
        "current_period_end": start + 30 * 86_400,
        "price": {"id": "price_sensors", "recurring": {"usage_type": "metered"}},
    }
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": CUSTOMER,
        "status": status,
        "cancel_at_period_end": False,
        "items": {"object": "list", "data": [item]},
    }


def invoice(invoice_id: str, sub_id: str) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": CUSTOMER,
        "amount_due": 4200,
        "amount_paid": 0,
        "currency": "eur",
        "parent": {"subscription_details": {"subscription": sub_id}},
    }


async def send(client: httpx.AsyncClient, event_type: str, obj: dict[str, Any], at: int) -> None:
    answer = await deliver(client, make_event(event_type, obj, created=at), secret=SECRET)
    assert answer.status_code == 200, answer.text


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


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
