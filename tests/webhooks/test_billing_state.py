"""Handlers keep billing state current, across API versions and out-of-order delivery."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import Organization, StripeInvoice, StripeSubscription
from tests.support.state import count
from tests.support.stripe_events import (
    FIXTURES,
    deliver,
    load_event,
    make_event,
    with_fresh_id,
)
from tests.webhooks.conftest import SECRET

T0 = 1_764_000_000  # 2025-11-24, after the basil release


async def new_organization(sessions: SessionFactory, customer_id: str | None = None) -> uuid.UUID:
    async with unit_of_work(sessions) as session:
        organization = Organization(name="Acme Cold Chain", stripe_customer_id=customer_id)
        session.add(organization)
        await session.flush()
        return organization.id


async def subscription(sessions: SessionFactory, sub_id: str) -> StripeSubscription:
    async with sessions() as session:
        row = await session.get(StripeSubscription, sub_id)
        assert row is not None
        return row


async def organization(sessions: SessionFactory, org_id: uuid.UUID) -> Organization:
    async with sessions() as session:
        row = await session.get(Organization, org_id)
        assert row is not None
        return row


def basil_subscription(status: str, *, sub_id: str = "sub_basil1") -> dict[str, Any]:
    """The documented 2025-03-31 shape: periods on items, a meter-backed price."""
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": "cus_basil1",
        "status": status,
        "cancel_at_period_end": False,
        "ended_at": None,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_1",
                    "object": "subscription_item",
                    "current_period_start": T0,
                    "current_period_end": T0 + 30 * 86_400,
                    "price": {
                        "id": "price_readings",
                        "object": "price",
                        "recurring": {
                            "interval": "month",
                            "usage_type": "metered",
                            "meter": "mtr_readings",
                        },
                    },
                },
                {
                    "id": "si_2",
                    "object": "subscription_item",
                    "current_period_start": T0,
                    "current_period_end": T0 + 30 * 86_400,
                    "price": {
                        "id": "price_base_fee",
                        "object": "price",
                        "recurring": {"interval": "month", "usage_type": "licensed"},
                    },
                },
            ],
        },
    }


async def test_pre_basil_subscription_reads_its_period_from_the_subscription(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    path = (
        FIXTURES
        / "events"
        / ("supabase-sync__customer.subscription.created__evt_1J02NfJDPojXS6LNawmt1X8q.json")
    )
    event = with_fresh_id(load_event(path))
    obj = event["data"]["object"]
    assert (await deliver(client, event, secret=SECRET)).json()["effect"] == "applied"

    row = await subscription(sessions, obj["id"])
    assert row.status == obj["status"]
    assert row.stripe_customer_id == obj["customer"]
    assert row.current_period_start == datetime.fromtimestamp(obj["current_period_start"], UTC)
    assert row.current_period_end == datetime.fromtimestamp(obj["current_period_end"], UTC)
    assert row.metered_price_ids == []  # a licensed price


async def test_basil_subscription_reads_its_period_from_items_and_keeps_metered_prices(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    event = make_event("customer.subscription.created", basil_subscription("active"), created=T0)
    assert (await deliver(client, event, secret=SECRET)).json()["effect"] == "applied"

    row = await subscription(sessions, "sub_basil1")
    assert row.status == "active"
    assert row.current_period_start == datetime.fromtimestamp(T0, UTC)
    assert row.current_period_end == datetime.fromtimestamp(T0 + 30 * 86_400, UTC)
    assert row.metered_price_ids == ["price_readings"]


async def test_older_subscription_update_never_overwrites_a_newer_one(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    newer = make_event(
        "customer.subscription.updated", basil_subscription("past_due"), created=T0 + 60
    )
    older = make_event("customer.subscription.updated", basil_subscription("active"), created=T0)

    assert (await deliver(client, newer, secret=SECRET)).json()["effect"] == "applied"
    late = await deliver(client, older, secret=SECRET)
    assert late.status_code == 200
    assert late.json()["effect"] == "stale"
    assert (await subscription(sessions, "sub_basil1")).status == "past_due"


async def test_subscription_updates_in_order_end_in_the_same_state(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    older = make_event("customer.subscription.updated", basil_subscription("active"), created=T0)
    newer = make_event(
        "customer.subscription.updated", basil_subscription("past_due"), created=T0 + 60
    )

    await deliver(client, older, secret=SECRET)
    await deliver(client, newer, secret=SECRET)
    row = await subscription(sessions, "sub_basil1")
    assert row.status == "past_due"
    assert row.last_event_id == newer["id"]
    assert await count(sessions, "billing_state_changes", "stripe_object_id = 'sub_basil1'") == 2


async def test_subscription_deleted_sets_canceled(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    created = make_event("customer.subscription.created", basil_subscription("active"), created=T0)
    canceled = basil_subscription("canceled") | {"ended_at": T0 + 120}
    deleted = make_event("customer.subscription.deleted", canceled, created=T0 + 120)
    await deliver(client, created, secret=SECRET)
    await deliver(client, deleted, secret=SECRET)
    row = await subscription(sessions, "sub_basil1")
    assert row.status == "canceled"
    assert row.ended_at == datetime.fromtimestamp(T0 + 120, UTC)


async def test_subscription_state_is_kept_before_the_checkout_links_its_customer(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    org_id = await new_organization(sessions)
    sub_event = make_event(
        "customer.subscription.created", basil_subscription("active"), created=T0 + 5
    )
    checkout = make_event(
        "checkout.session.completed",
        {
            "id": "cs_1",
            "object": "checkout.session",
            "customer": "cus_basil1",
            "client_reference_id": str(org_id),
            "metadata": {},
            "mode": "subscription",
        },
        created=T0,
    )
    await deliver(client, sub_event, secret=SECRET)
    assert (await deliver(client, checkout, secret=SECRET)).json()["effect"] == "applied"

    async with sessions() as session:
        status = await session.scalar(
            select(StripeSubscription.status)
            .join(
                Organization,
                Organization.stripe_customer_id == StripeSubscription.stripe_customer_id,
            )
            .where(Organization.id == org_id)
        )
    assert status == "active"


async def test_checkout_links_the_organization_named_in_metadata(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    org_id = await new_organization(sessions)
    event = with_fresh_id(
        load_event(FIXTURES / "events" / "stripe-ruby-mock__checkout.session.completed__n1.json")
    )
    event["data"]["object"]["metadata"] = {"organization_id": str(org_id)}
    response = await deliver(client, event, secret=SECRET)
    assert response.json()["effect"] == "applied"
    assert (await organization(sessions, org_id)).stripe_customer_id == "cus_00000000000000"


async def test_checkout_for_an_unknown_organization_is_recorded_without_effect(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    event = make_event(
        "checkout.session.completed",
        {
            "id": "cs_2",
            "object": "checkout.session",
            "customer": "cus_x",
            "client_reference_id": str(uuid.uuid4()),
            "metadata": {},
        },
        created=T0,
    )
    response = await deliver(client, event, secret=SECRET)
    assert response.status_code == 200
    assert response.json()["effect"] == "ignored"
    assert "no organization" in response.json()["reason"]
    assert await count(sessions, "stripe_events") == 1


async def test_checkout_never_moves_a_customer_that_pays_for_another_organization(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    holder = await new_organization(sessions, "cus_taken")
    other = await new_organization(sessions)
    event = make_event(
        "checkout.session.completed",
        {
            "id": "cs_3",
            "object": "checkout.session",
            "customer": "cus_taken",
            "client_reference_id": str(other),
            "metadata": {},
        },
        created=T0,
    )
    assert (await deliver(client, event, secret=SECRET)).json()["effect"] == "ignored"
    assert (await organization(sessions, holder)).stripe_customer_id == "cus_taken"
    assert (await organization(sessions, other)).stripe_customer_id is None


async def test_customer_deleted_marks_the_organization_and_a_late_checkout_does_not_relink(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    org_id = await new_organization(sessions)
    checkout = make_event(
        "checkout.session.completed",
        {
            "id": "cs_4",
            "object": "checkout.session",
            "customer": "cus_gone",
            "client_reference_id": str(org_id),
            "metadata": {},
        },
        created=T0,
    )
    deleted = make_event(
        "customer.deleted",
        {"id": "cus_gone", "object": "customer", "deleted": True},
        created=T0 + 10,
    )
    await deliver(client, checkout, secret=SECRET)
    assert (await deliver(client, deleted, secret=SECRET)).json()["effect"] == "applied"
    replayed_checkout = dict(checkout, id="evt_test_redelivered_checkout")
    # The customer it links was deleted (a deletion no longer moves the link watermark, so the
    # answer is "ignored", not "stale"; the state is the same).
    assert (await deliver(client, replayed_checkout, secret=SECRET)).json()["effect"] == "ignored"

    row = await organization(sessions, org_id)
    assert row.stripe_customer_id == "cus_gone"
    assert row.stripe_customer_deleted_at == datetime.fromtimestamp(T0 + 10, UTC)


async def test_invoice_paid_reads_the_subscription_from_the_pre_basil_shape(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    path = FIXTURES / "events" / "supabase-sync__invoice.paid__evt_1KJrGtJDPojXS6LN15fcthM3.json"
    event = with_fresh_id(load_event(path))
    obj = event["data"]["object"]
    assert obj["subscription"]
    await deliver(client, event, secret=SECRET)
    async with sessions() as session:
        row = await session.get(StripeInvoice, obj["id"])
    assert row is not None
    assert row.payment_status == "paid"
    assert row.stripe_subscription_id == obj["subscription"]


async def test_invoice_payment_failed_reads_the_subscription_from_the_basil_shape(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    invoice = {
        "id": "in_basil1",
        "object": "invoice",
        "customer": "cus_basil1",
        "amount_due": 1250,
        "amount_paid": 0,
        "currency": "eur",
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": "sub_basil1", "metadata": {}},
        },
    }
    await deliver(client, make_event("invoice.payment_failed", invoice, created=T0), secret=SECRET)
    async with sessions() as session:
        row = await session.get(StripeInvoice, "in_basil1")
    assert row is not None
    assert row.payment_status == "payment_failed"
    assert row.stripe_subscription_id == "sub_basil1"
    assert row.amount_due == 1250


async def test_a_paid_invoice_stays_paid_when_an_earlier_failure_arrives_in_the_same_second(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    invoice = {"id": "in_2", "object": "invoice", "customer": "cus_1", "amount_due": 500}
    await deliver(client, make_event("invoice.paid", invoice, created=T0), secret=SECRET)
    await deliver(client, make_event("invoice.payment_failed", invoice, created=T0), secret=SECRET)
    async with sessions() as session:
        row = await session.get(StripeInvoice, "in_2")
    assert row is not None
    assert row.payment_status == "paid"


async def test_unknown_event_type_is_recorded_and_answered_200(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    event = make_event("radar.early_fraud_warning.created", {"id": "issfr_1"}, created=T0)
    response = await deliver(client, event, secret=SECRET)
    assert response.status_code == 200
    assert response.json() == {
        "received": True,
        "outcome": "processed",
        "effect": "ignored",
        "reason": "event type has no handler",
    }
    assert await count(sessions, "stripe_events", f"event_id = '{event['id']}'") == 1
    assert await count(sessions, "billing_state_changes") == 0


async def test_a_customer_deleted_before_its_checkout_arrives_stays_deleted_once_linked(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    # Stripe does not order events: the checkout's delivery can fail and be retried after the
    # customer was deleted, so `customer.deleted` may come first, when no organization holds it.
    org_id = await new_organization(sessions)
    deleted = make_event(
        "customer.deleted",
        {"id": "cus_early_gone", "object": "customer", "deleted": True},
        created=T0 + 10,
    )
    checkout = make_event(
        "checkout.session.completed",
        {
            "id": "cs_5",
            "object": "checkout.session",
            "customer": "cus_early_gone",
            "client_reference_id": str(org_id),
            "metadata": {},
        },
        created=T0,
    )
    assert (await deliver(client, deleted, secret=SECRET)).status_code == 200
    assert (await deliver(client, checkout, secret=SECRET)).status_code == 200

    # The same state as when the two arrive in order: linked, and marked deleted.
    row = await organization(sessions, org_id)
    assert row.stripe_customer_id == "cus_early_gone"
    assert row.stripe_customer_deleted_at == datetime.fromtimestamp(T0 + 10, UTC)


async def test_a_canceled_subscription_stays_canceled_when_an_update_of_the_same_second_follows(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    # `created` has one-second resolution and Stripe does not order events; a canceled
    # subscription is final in Stripe, so whatever arrives after its deletion is older.
    canceled = basil_subscription("canceled") | {"ended_at": T0}
    deleted = make_event("customer.subscription.deleted", canceled, created=T0)
    updated = make_event("customer.subscription.updated", basil_subscription("active"), created=T0)
    await deliver(client, deleted, secret=SECRET)
    await deliver(client, updated, secret=SECRET)

    row = await subscription(sessions, "sub_basil1")
    assert row.status == "canceled"
    assert row.ended_at == datetime.fromtimestamp(T0, UTC)


async def test_a_paid_invoice_keeps_what_was_paid_when_an_earlier_failure_arrives_after_it(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    paid = {"id": "in_3", "object": "invoice", "customer": "cus_1", "amount_due": 500}
    failed_attempt = paid | {"amount_paid": 0, "amount_remaining": 500}
    paid |= {"amount_paid": 500, "amount_remaining": 0}
    await deliver(client, make_event("invoice.paid", paid, created=T0), secret=SECRET)
    late = make_event("invoice.payment_failed", failed_attempt, created=T0)
    await deliver(client, late, secret=SECRET)

    async with sessions() as session:
        row = await session.get(StripeInvoice, "in_3")
    assert row is not None
    assert (row.payment_status, row.amount_paid) == ("paid", 500)


def checkout_event(org_id: uuid.UUID, customer: str, created: int) -> dict[str, Any]:
    return make_event(
        "checkout.session.completed",
        {
            "id": f"cs_{customer}_{created}",
            "object": "checkout.session",
            "customer": customer,
            "client_reference_id": str(org_id),
            "metadata": {},
        },
        created=created,
    )


def customer_deleted_event(customer: str, created: int) -> dict[str, Any]:
    return make_event(
        "customer.deleted", {"id": customer, "object": "customer", "deleted": True}, created=created
    )


async def test_a_new_customer_linked_before_the_old_one_was_deleted_stays_live_in_any_order(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    # In Stripe: the organization moves from cus_old to cus_new (T0 + 10), then cus_old is
    # deleted (T0 + 20). The deletion arriving before the move must not hold the organization
    # on the deleted customer: it says nothing about cus_new.
    org_id = await new_organization(sessions)
    await deliver(client, checkout_event(org_id, "cus_old", T0), secret=SECRET)
    await deliver(client, customer_deleted_event("cus_old", T0 + 20), secret=SECRET)
    answer = await deliver(client, checkout_event(org_id, "cus_new", T0 + 10), secret=SECRET)

    assert answer.json()["effect"] == "applied"
    row = await organization(sessions, org_id)
    assert (row.stripe_customer_id, row.stripe_customer_deleted_at) == ("cus_new", None)


async def test_an_older_link_arriving_after_the_newer_customer_was_deleted_changes_nothing(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    # In Stripe: cus_first linked (T0), replaced by cus_second (T0 + 10), which is deleted
    # (T0 + 20). cus_first's late checkout is older than the link it would undo.
    org_id = await new_organization(sessions)
    await deliver(client, checkout_event(org_id, "cus_second", T0 + 10), secret=SECRET)
    await deliver(client, customer_deleted_event("cus_second", T0 + 20), secret=SECRET)
    answer = await deliver(client, checkout_event(org_id, "cus_first", T0), secret=SECRET)

    assert answer.json()["effect"] == "stale"
    row = await organization(sessions, org_id)
    assert row.stripe_customer_id == "cus_second"
    assert row.stripe_customer_deleted_at == datetime.fromtimestamp(T0 + 20, UTC)
