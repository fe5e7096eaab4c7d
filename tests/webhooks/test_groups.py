"""Handled events applied in groups (`webhooks/groups.py`): a group's events end exactly as
they would applied one at a time, and a group that meets a conflict falls back to that.

`deliver_together` and `deliver_alone` run side by side on one database, on two copies of the
same histories (ids and names marked `qq` and `zz`), and every answer and every row they leave
must match once the marks are mapped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.db import SessionFactory
from sensor_billing.errors import RecordingInterruptedError
from sensor_billing.jobs import QueueNames
from sensor_billing.jobs.connection import open_queue
from sensor_billing.webhooks.entitlement_changes import EntitlementNotifier
from sensor_billing.webhooks.envelope import StripeEventEnvelope, read_event
from sensor_billing.webhooks.groups import HandledDeliveries
from sensor_billing.webhooks.handlers import GROUP_HANDLERS, HANDLERS
from sensor_billing.webhooks.service import Processed, deliver_alone, deliver_together
from tests.support.billing_events import queued_jobs
from tests.support.billing_state import (
    READINGS,
    SENSORS,
    T0,
    at,
    invoice,
    new_organization,
    subscription,
)
from tests.support.stripe_events import make_event

ALONE, GROUPED = "qq", "zz"
NOW = T0 + 40 * 86_400


@pytest.fixture
async def notifier(redis_url: str) -> AsyncIterator[EntitlementNotifier]:
    queue = open_queue(redis_url, QueueNames.BILLING_EVENTS)
    yield EntitlementNotifier(queue, clock=lambda: at(T0 + 3 * 86_400), grace=timedelta(days=7))
    await queue.close()


async def never_fetched(subscription_id: str) -> dict[str, Any]:
    raise AssertionError(f"no event here shares a second with the stored state ({subscription_id})")


def event(event_type: str, obj: dict[str, Any], created: int) -> StripeEventEnvelope:
    return read_event(make_event(event_type, obj, created=created))


def checkout(world: str, organization: uuid.UUID | str | None, customer: str | None) -> Any:
    session: dict[str, Any] = {"id": f"cs_{world}_{customer}", "object": "checkout.session"}
    if organization is not None:
        session["metadata"] = {"organization_id": str(organization)}
    if customer is not None:
        session["customer"] = customer
    return session


async def histories(
    sessions: SessionFactory, world: str
) -> tuple[list[list[StripeEventEnvelope]], dict[str, str]]:
    """One world's events, phase by phase (each phase: one type, distinct objects), and its
    organizations' ids by name (to map one world onto the other)."""

    def c(n: int) -> str:
        return f"cus_{world}{n}"

    def s(n: int) -> str:
        return f"sub_{world}{n}"

    orgs = {
        name: await new_organization(sessions, customer, name=f"{world} {name}")
        for name, customer in [
            ("linked", None),
            ("second", None),
            ("holder", c(3)),
            ("thief", None),
            ("late", None),
            ("moving", c(7)),
        ]
    }
    nowhere = uuid.uuid4()  # no such organization

    def sub(kind: str, n: int, status: str, when: int, **options: Any) -> StripeEventEnvelope:
        obj = subscription(s(n), status, customer=c(n), **options)
        return event(f"customer.subscription.{kind}", obj, when)

    def inv(kind: str, n: int, when: int) -> StripeEventEnvelope:
        return event(f"invoice.{kind}", invoice(f"in_{world}{n}", s(n), customer=c(n)), when)

    def linking(organization: uuid.UUID | None, customer: str | None) -> StripeEventEnvelope:
        return event("checkout.session.completed", checkout(world, organization, customer), t + 10)

    def deleting(customer: str, when: int) -> StripeEventEnvelope:
        return event("customer.deleted", {"id": customer, "object": "customer"}, when)

    t = T0
    phases = [
        # A deletion arriving before the checkout that links its customer.
        [deleting(c(4), t)],
        [
            linking(orgs["linked"], c(1)),
            linking(orgs["second"], c(2)),
            linking(orgs["thief"], c(3)),  # held by another organization: ignored
            linking(nowhere, c(6)),
            linking(orgs["late"], c(4)),  # deleted already: linked as deleted
            linking(None, c(5)),
            linking(orgs["moving"], None),
        ],
        [
            sub("created", 1, "active", t + 20, prices=[SENSORS, READINGS]),
            sub("created", 2, "past_due", t + 20),
            sub("created", 3, "active", t + 20),
            event("customer.subscription.created", {"id": s(9), "object": "subscription"}, t + 20),
        ],
        [
            sub("updated", 1, "past_due", t + 15),  # older than what is stored: stale
            sub("updated", 2, "active", t + 30, cancel_at_period_end=True),
            sub("updated", 6, "trialing", t + 30),
        ],
        [inv("payment_failed", 1, t + 40), inv("payment_failed", 2, t + 40)],
        [
            inv("paid", 1, t + 50),
            inv("paid", 3, t + 50),
            event("invoice.paid", {"id": f"in_{world}x", "object": "invoice"}, t + 50),
        ],
        # An earlier failure arriving after the payment: the first failure moves, the invoice
        # stays paid.
        [inv("payment_failed", 1, t + 35), inv("payment_failed", 2, t + 60)],
        [sub("deleted", 1, "canceled", t + 70), sub("deleted", 2, "canceled", t + 70)],
        [deleting(c(1), t + 80), deleting(c(4), t + 80), deleting(c(8), t + 80)],
    ]
    names = {str(org_id): name for name, org_id in orgs.items()}
    return phases, {**names, str(nowhere): "nowhere"}


async def state_of(engine: AsyncEngine, world: str, names: dict[str, str]) -> dict[str, Any]:
    """Every row the world's events wrote, its ids mapped to world `a`'s names."""
    queries = {
        "organizations": "SELECT name, stripe_customer_id, stripe_customer_deleted_at,"
        " stripe_customer_event_created FROM organizations ORDER BY name",
        "subscriptions": "SELECT id, stripe_customer_id, status, current_period_start,"
        " current_period_end, metered_price_ids, cancel_at_period_end, last_event_created"
        " FROM stripe_subscriptions ORDER BY id",
        "invoices": "SELECT id, stripe_customer_id, stripe_subscription_id, payment_status,"
        " amount_due, amount_paid, first_failed_at, last_event_created FROM stripe_invoices"
        " ORDER BY id",
        "changes": "SELECT o.name, c.stripe_object_id, c.event_type, c.change, c.summary"
        " FROM billing_state_changes c LEFT JOIN organizations o ON o.id = c.organization_id"
        " ORDER BY 2, 3, 4::text",
        "notified": "SELECT o.name, n.entitled, n.reason, n.until FROM notified_entitlements n"
        " JOIN organizations o ON o.id = n.organization_id ORDER BY 1",
        "notices": "SELECT o.name, n.entitled, n.reason, n.until FROM entitlement_notices n"
        " JOIN organizations o ON o.id = n.organization_id ORDER BY 1, 3",
    }
    async with engine.connect() as connection:
        found = {
            name: [tuple(row) for row in await connection.execute(text(query))]
            for name, query in queries.items()
        }
    mapped: dict[str, Any] = _in_world_a(_of_world(found, world), world, names)
    return mapped


def _of_world(found: dict[str, list[tuple[Any, ...]]], world: str) -> dict[str, Any]:
    def mine(row: tuple[Any, ...]) -> bool:
        return any(isinstance(v, str) and world in v for v in row)

    return {name: [row for row in rows if mine(row)] for name, rows in found.items()}


def _in_world_a(value: Any, world: str, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for org_id, name in names.items():
            value = value.replace(org_id, f"<{name}>")
        return value.replace(world, ALONE)
    if isinstance(value, (list, tuple)):
        return type(value)(_in_world_a(item, world, names) for item in value)
    if isinstance(value, dict):
        return {k: _in_world_a(v, world, names) for k, v in value.items()}
    return value


def answers(processed: list[Processed], world: str, names: dict[str, str]) -> list[Any]:
    mapped: list[Any] = _in_world_a(
        [(p.outcome.value, p.result.effect.value, p.result.reason) for p in processed], world, names
    )
    return mapped


async def test_a_group_ends_every_event_as_applying_them_one_at_a_time_does(
    engine: AsyncEngine, sessions: SessionFactory, notifier: EntitlementNotifier, redis_url: str
) -> None:
    alone_phases, alone_names = await histories(sessions, ALONE)
    grouped_phases, grouped_names = await histories(sessions, GROUPED)

    for alone, grouped in zip(alone_phases, grouped_phases, strict=True):
        one_by_one = [await deliver_alone(engine, e, never_fetched, notifier) for e in alone]
        handle = GROUP_HANDLERS[HANDLERS[grouped[0].type]]
        together = await deliver_together(engine, grouped, handle, notifier)
        assert answers(together, GROUPED, grouped_names) == answers(one_by_one, ALONE, alone_names)
        # Delivered again, every event of the group is a duplicate and changes nothing.
        again = await deliver_together(engine, grouped, handle, notifier)
        assert {p.outcome.value for p in again} == {"duplicate"}

    grouped_state = await state_of(engine, GROUPED, grouped_names)
    assert grouped_state == await state_of(engine, ALONE, alone_names)
    # The histories reach every rule: stale, ignored, moved first failures, notices.
    assert len(grouped_state["changes"]) >= 15
    assert len(grouped_state["notices"]) >= 4
    # Each notice's job is on the queue, the same for both.
    jobs = [job.data for job in await queued_jobs(redis_url)]
    alone_ids = {e.id for phase in alone_phases for e in phase}
    reasons = {
        world: sorted(j["reason"] for j in jobs if (j["eventId"] in alone_ids) == (world == ALONE))
        for world in (ALONE, GROUPED)
    }
    assert reasons[ALONE] == reasons[GROUPED]
    assert len(reasons[ALONE]) == len(grouped_state["notices"])


@asynccontextmanager
async def group_in_flight(
    engine: AsyncEngine, deliveries: HandledDeliveries
) -> AsyncIterator[None]:
    """A delivery being applied throughout the block (its subscription's lock held by another
    transaction until the block ends): deliveries made in the block wait for it."""
    async with engine.connect() as blocker:
        await blocker.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('sub_held', 0))"))
        held = asyncio.ensure_future(
            deliveries.deliver(
                updated("sub_held", "active", T0, customer="cus_held"), never_fetched
            )
        )
        await asyncio.sleep(0.1)
        yield
        await blocker.rollback()
    assert (await held).outcome.value == "processed"


def group_sizes() -> tuple[float, float]:
    """(groups, events) the webhook group histogram has counted so far."""
    count = REGISTRY.get_sample_value("sensor_billing_webhook_group_events_count") or 0.0
    total = REGISTRY.get_sample_value("sensor_billing_webhook_group_events_sum") or 0.0
    return count, total


def rolled_back() -> float:
    return REGISTRY.get_sample_value("sensor_billing_webhook_groups_rolled_back_total") or 0.0


def updated(
    subscription_id: str, status: str, created: int, customer: str = "cus_one"
) -> StripeEventEnvelope:
    obj = subscription(subscription_id, status, customer=customer)
    return event("customer.subscription.updated", obj, created)


async def deliver_all(
    deliveries: HandledDeliveries, events: list[StripeEventEnvelope]
) -> list[Processed]:
    return list(await asyncio.gather(*(deliveries.deliver(e, never_fetched) for e in events)))


async def test_concurrent_deliveries_go_in_groups_each_with_its_own_effect_once(
    engine: AsyncEngine, sessions: SessionFactory, notifier: EntitlementNotifier
) -> None:
    deliveries = HandledDeliveries(engine, notifier)
    created = [updated(f"sub_g{n}", "active", T0, customer=f"cus_g{n}") for n in range(40)]
    for n in range(40):
        await new_organization(sessions, f"cus_g{n}", name=f"g {n}")
    groups_before, events_before = group_sizes()

    # Each event twice (Stripe's copies), all at once.
    processed = await deliver_all(deliveries, created + created)

    groups, events = (
        now - before
        for now, before in zip(group_sizes(), (groups_before, events_before), strict=True)
    )
    # A copy that arrives while its event's group is applied goes in a later group.
    assert events >= 40
    assert groups < 20
    outcomes = [p.outcome.value for p in processed]
    assert outcomes == ["processed"] * 40 + ["duplicate"] * 40
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT count(*), count(DISTINCT organization_id) FROM entitlement_notices")
        )
        assert tuple(rows.one()) == (40, 40)
        changes = await connection.scalar(text("SELECT count(*) FROM billing_state_changes"))
        assert changes == 40


async def test_events_of_one_object_never_share_a_group_and_the_newest_wins(
    engine: AsyncEngine, sessions: SessionFactory
) -> None:
    deliveries = HandledDeliveries(engine, None)
    statuses = ["past_due", "active", "unpaid", "active", "canceled"]
    updates = [updated("sub_one", status, T0 + n) for n, status in enumerate(statuses)]
    others = [updated(f"sub_o{n}", "active", T0, customer=f"cus_o{n}") for n in range(10)]

    processed = await deliver_all(deliveries, [*reversed(updates), *others])

    assert [p.outcome.value for p in processed] == ["processed"] * 15
    # Newest first in arrival order: every older one after it is stale.
    assert [p.result.effect.value for p in processed[:5]] == ["applied"] + ["stale"] * 4
    async with engine.connect() as connection:
        status = await connection.scalar(
            text("SELECT status FROM stripe_subscriptions WHERE id = 'sub_one'")
        )
    assert status == "canceled"


async def test_a_group_that_meets_a_conflict_is_rolled_back_and_applied_one_at_a_time(
    engine: AsyncEngine, sessions: SessionFactory
) -> None:
    # The organization `holder` holds cus_old; one checkout moves it to cus_new while another
    # links cus_old to `taker`: which is applied first decides whether cus_old is free.
    holder = await new_organization(sessions, "cus_old", name="holder")
    taker = await new_organization(sessions, None, name="taker")
    deliveries = HandledDeliveries(engine, None, max_in_flight=1)
    rolled_back_before = rolled_back()
    events = [
        event("checkout.session.completed", checkout("x", taker, "cus_old"), T0),
        event("checkout.session.completed", checkout("x", holder, "cus_new"), T0),
    ]

    async with group_in_flight(engine, deliveries):
        delivered = asyncio.ensure_future(deliver_all(deliveries, events))
        await asyncio.sleep(0.1)  # both wait for the group in flight: one group
    processed = await delivered

    assert rolled_back() == rolled_back_before + 1
    assert [(p.result.effect.value, p.result.reason) for p in processed] == [
        ("ignored", f"customer cus_old belongs to organization {holder}"),
        ("applied", ""),
    ]
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT name, stripe_customer_id FROM organizations ORDER BY name")
        )
        assert [tuple(row) for row in rows] == [("holder", "cus_new"), ("taker", None)]


async def test_stopping_fails_the_deliveries_still_waiting_and_writes_nothing_for_them(
    engine: AsyncEngine, sessions: SessionFactory
) -> None:
    deliveries = HandledDeliveries(engine, None)
    waits: list[asyncio.Task[Processed]] = []
    async with engine.connect() as blocker:
        # Another transaction holds the subscription's lock: its delivery's group waits.
        await blocker.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended('sub_stuck', 0))")
        )
        stuck = updated("sub_stuck", "active", T0)
        waits.append(asyncio.create_task(deliveries.deliver(stuck, never_fetched)))
        later = updated("sub_stuck", "unpaid", T0 + 1)
        waits.append(asyncio.create_task(deliveries.deliver(later, never_fetched)))
        await asyncio.sleep(0.3)
        await deliveries.aclose()
        await blocker.rollback()

    for wait in waits:
        with pytest.raises(RecordingInterruptedError):
            await wait
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM stripe_events")) == 0
