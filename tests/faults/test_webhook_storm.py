"""Webhook storms: many events, each delivered several times at once, in shuffled order;
once more while the API's database connections are being terminated."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
import sqlalchemy.exc
from sqlalchemy import select, text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import Organization, StripeInvoice, StripeSubscription
from sensor_billing.settings import load_settings
from tests.support.app import running_app
from tests.support.databases import terminate_backends
from tests.support.stripe_events import deliver, make_event

pytestmark = pytest.mark.faults

SECRET = "whsec_storm_secret"
API_APPLICATION_NAME = "sensor-billing-api"
T0 = 1_764_000_000
ORGANIZATIONS = 6
COPIES = 4  # deliveries of each event in the storm
MAX_ROUNDS = 8  # Stripe's retries of deliveries that failed
SUBSCRIPTION_STATUSES = ("incomplete", "active", "past_due", "active", "unpaid")


def storm_events(organizations: list[uuid.UUID]) -> dict[str, list[dict[str, Any]]]:
    """Per organization: the checkout that links its customer, a subscription changing five
    times, an invoice that failed twice and was then paid, and one event type nobody handles.
    Every event of one object has its own `created` second."""
    events: dict[str, list[dict[str, Any]]] = {"checkout": [], "unhandled": []}
    for index, org in enumerate(organizations):
        customer = f"cus_storm_{index}"
        checkout = {
            "id": f"cs_storm_{index}",
            "object": "checkout.session",
            "customer": customer,
            "metadata": {"organization_id": str(org)},
        }
        events["checkout"].append(
            make_event("checkout.session.completed", checkout, created=T0 + index)
        )
        events[f"sub_storm_{index}"] = [
            make_event(
                "customer.subscription.updated",
                {
                    "id": f"sub_storm_{index}",
                    "object": "subscription",
                    "customer": customer,
                    "status": status,
                },
                created=T0 + 100 + step,
            )
            for step, status in enumerate(SUBSCRIPTION_STATUSES)
        ]
        invoice = {"id": f"in_storm_{index}", "object": "invoice", "customer": customer}
        events[f"in_storm_{index}"] = [
            make_event("invoice.payment_failed", invoice, created=T0 + 200),
            make_event("invoice.payment_failed", invoice, created=T0 + 201),
            make_event("invoice.paid", {**invoice, "amount_paid": 900}, created=T0 + 202),
        ]
        events["unhandled"].append(
            make_event("customer.updated", {"id": customer, "object": "customer"}, created=T0)
        )
    return events


async def new_organizations(sessions: SessionFactory) -> list[uuid.UUID]:
    async with unit_of_work(sessions) as session:
        rows = [Organization(name=f"Storm {index}") for index in range(ORGANIZATIONS)]
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]


async def recorded_events_and_changes(
    sessions: SessionFactory,
) -> tuple[Counter[str], Counter[str]]:
    """How often each event id is in `stripe_events`, and in `billing_state_changes`."""
    async with sessions() as session:
        recorded = Counter(
            (await session.execute(text("SELECT event_id FROM stripe_events"))).scalars()
        )
        changes = Counter(
            (await session.execute(text("SELECT event_id FROM billing_state_changes"))).scalars()
        )
    return recorded, changes


async def assert_every_object_at_its_newest_event(
    sessions: SessionFactory,
    organizations: list[uuid.UUID],
    by_object: dict[str, list[dict[str, Any]]],
) -> None:
    """Each organization linked to its customer, each subscription and invoice at the state
    of its newest event (`storm_events`), and nothing else mirrored."""
    async with sessions() as session:
        subscriptions = {row.id: row for row in await session.scalars(select(StripeSubscription))}
        invoices = {row.id: row for row in await session.scalars(select(StripeInvoice))}
        linked = dict(
            (await session.execute(select(Organization.id, Organization.stripe_customer_id))).all()
        )
    for index, org in enumerate(organizations):
        assert linked[org] == f"cus_storm_{index}"
        newest_update = by_object[f"sub_storm_{index}"][-1]
        sub = subscriptions[f"sub_storm_{index}"]
        assert (sub.status, sub.last_event_id) == ("unpaid", newest_update["id"])
        paid = by_object[f"in_storm_{index}"][-1]
        invoice = invoices[f"in_storm_{index}"]
        assert (invoice.payment_status, invoice.last_event_id) == ("paid", paid["id"])
    assert len(subscriptions) == len(invoices) == len(organizations)


async def storm(
    client: httpx.AsyncClient,
    events: list[dict[str, Any]],
    rng: random.Random,
    first_round_over: asyncio.Event,
) -> tuple[list[httpx.Response], int]:
    """Deliver every event COPIES times at once, shuffled; deliver again what was not answered
    2xx, as Stripe retries. Returns every response and the number of redeliveries."""
    queue = [event for event in events for _ in range(COPIES)]
    responses: list[httpx.Response] = []
    redeliveries = 0
    for round_number in range(MAX_ROUNDS):
        rng.shuffle(queue)
        answers = await asyncio.gather(*(deliver(client, e, secret=SECRET) for e in queue))
        responses += answers
        first_round_over.set()
        queue = [e for e, r in zip(queue, answers, strict=True) if r.status_code >= 300]
        if not queue:
            return responses, redeliveries
        redeliveries += len(queue)
        await asyncio.sleep(0.05 * (round_number + 1))
    raise AssertionError(f"{len(queue)} deliveries still failing after {MAX_ROUNDS} rounds")


@pytest.mark.parametrize("terminate_connections", [False, True], ids=["storm", "storm-pg-kills"])
async def test_webhook_storm_applies_every_event_once(
    terminate_connections: bool,
    sessions: SessionFactory,
    database_url: str,
    redis_url: str,
    observe: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    organizations = await new_organizations(sessions)
    by_object = storm_events(organizations)
    events = [event for group in by_object.values() for event in group]
    settings = load_settings(
        database_url=database_url, redis_url=redis_url, stripe_webhook_secret=SECRET
    )
    terminated = 0

    async def terminate_api_connections(stop: asyncio.Event) -> None:
        nonlocal terminated
        while not stop.is_set():
            terminated += await terminate_backends(sessions, API_APPLICATION_NAME)
            await asyncio.sleep(0.02)

    async with running_app(settings) as (_, client):
        stop = asyncio.Event()
        killer = (
            asyncio.create_task(terminate_api_connections(stop)) if terminate_connections else None
        )
        try:
            responses, redeliveries = await storm(client, events, random.Random(7), stop)
        finally:
            stop.set()
            if killer is not None:
                await killer
    if terminate_connections:
        assert terminated > 0
        assert redeliveries > 0, "no delivery failed: the terminations hit nothing"

    ok = [r.json() for r in responses if r.status_code == 200]
    outcomes = Counter(answer["outcome"] for answer in ok)
    assert outcomes["processed"] == len(events), outcomes
    assert outcomes["duplicate"] == len(ok) - len(events), outcomes
    applied = sum(1 for a in ok if a["outcome"] == "processed" and a["effect"] == "applied")
    recorded, changes = await recorded_events_and_changes(sessions)
    assert recorded == Counter(event["id"] for event in events)  # each event recorded once
    assert all(count == 1 for count in changes.values()), changes.most_common(3)
    assert sum(changes.values()) == applied  # one change per applied event, none from a copy
    await assert_every_object_at_its_newest_event(sessions, organizations, by_object)

    statuses = Counter(str(response.status_code) for response in responses)
    # Requests that waited the pool's whole timeout (DATABASE_POOL_TIMEOUT_SECONDS) for a
    # connection: SQLAlchemy's QueuePool does not wake its waiters when it discards a
    # terminated connection.
    pool_timeouts = sum(
        1
        for record in caplog.records
        if record.exc_info and isinstance(record.exc_info[1], sqlalchemy.exc.TimeoutError)
    )
    observe(
        fault="webhook storm" + (" + API connections terminated" if terminate_connections else ""),
        events=len(events),
        deliveries=len(responses),
        answers=dict(statuses),
        redeliveries=redeliveries,
        processed=outcomes["processed"],
        duplicates=outcomes["duplicate"],
        effects_applied=applied,
        state_changes=sum(changes.values()),
        connections_terminated=terminated,
        requests_that_waited_for_the_pool_timeout=pool_timeouts,
    )
