"""Deliveries that arrive at one moment, in any order and each more than once, end in the billing
state that delivering each once, one at a time in Stripe's order, ends in; and each has its own
effect, whatever arrives with it.

The handled deliveries arriving together in one API process are applied in groups, one
transaction per group (webhooks/groups.py): a rule that this path gets wrong shows here as a
difference from the in-order run, or as an effect given to the wrong object. The rules
(billing/service.py, billing/entitlement_notices.py): an older event never overwrites newer
state; a paid invoice stays paid and keeps its first failure; a canceled subscription stays
canceled; a deleted customer stays deleted, linked before or after; each event applies once and
logs one change per object; an organization is told of each change of its entitlement once,
and the job for it is added.

Within one process, events that share an object, customer or organization are never applied at
once (`handlers.group_keys`); between two API processes only PostgreSQL keeps them apart: each
handled event locks its Stripe customer (and its object) first. The tests at the end make the
races between two processes happen every time, and that a late first payment failure is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.billing.entitlement_notices_repository import NoticeRow
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.driver import Driver
from sensor_billing.db.schema import Organization
from sensor_billing.settings import Settings
from sensor_billing.webhooks.entitlement_changes import EntitlementNotifier
from sensor_billing.webhooks.envelope import StripeEventEnvelope
from tests.support.app import running_app
from tests.support.billing_events import queued_jobs
from tests.support.billing_state import GRACE, READINGS, SENSORS, at, invoice, send, subscription
from tests.support.databases import empty_tables
from tests.support.stripe_events import deliver, make_event
from tests.webhooks.conftest import SECRET

T0 = 1_764_000_000  # 2025-11-24
DAY = 86_400
PERIOD = 30 * DAY  # `subscription()`'s period
SEED = 20_261_207
COPIES = 2  # each event arrives this many times among the others

Event = dict[str, Any]
Answered = list[tuple[Event, httpx.Response]]

# --- Many organizations' histories ---------------------------------------------------------

# The app's clock in every run: past the grace period of a failure from T0, inside it for one
# from T0 + 2 days on (GRACE is 7 days).
HISTORY_NOW = T0 + 8 * DAY
STEPS = (
    "checkout",
    "created",
    "past_due",
    "failed",
    "retry_failed",  # Stripe's retry of the invoice's payment fails too
    "paid",
    "active",
    "canceled",
    "deleted",
)
# Each organization's life in Stripe's order, and the entitlement it ends with (None: never
# told of one). Organization k starts at T0 + (k % 4) * 2 days.
HISTORIES: tuple[tuple[tuple[str, ...], str | None], ...] = (
    (STEPS, "customer_deleted"),
    # Unpaid after Stripe's retry, its grace still running: shuffled, the retry's failure can
    # arrive before the first, which then moves the grace end the organization was told.
    (STEPS[:5], "past_due_grace"),
    (STEPS[:8], "canceled"),
    (STEPS[:7], "active"),  # set to cancel at the period's end
    (STEPS[:6], "past_due_grace_ended"),  # paid, the subscription still past_due from T0
    (STEPS[:4], "past_due_grace"),
    (STEPS[:3], "past_due_grace"),
    (STEPS[:2], "active"),
    (STEPS[:1], None),
    (STEPS[1:7], None),  # its checkout never arrives: never linked
    ((*STEPS[:7], "deleted"), "customer_deleted"),  # deleted with a live subscription
    # Unpaid after the retry too: in SEED's shuffle its first failure is the last of its
    # events to arrive, so only that failure's check tells the earlier grace end.
    (STEPS[:5], "past_due_grace"),
    # Its checkout's event later; from T0, so its grace has ended.
    (("created", "checkout", "past_due", "failed"), "past_due_grace_ended"),
)
PRICE_SETS = ([SENSORS], [SENSORS, READINGS], [READINGS])


def history_organization(k: int) -> uuid.UUID:
    # Fixed, so that both runs' organizations (and the checkouts naming them) are the same.
    return uuid.UUID(int=0x5B_0000 + k)


def step_event(step: str, k: int, start: int, created: int) -> Event:
    customer, sub_id, invoice_id = f"cus_hist_{k}", f"sub_hist_{k}", f"in_hist_{k}"

    def sub(status: str, *, cancel: bool = False) -> Event:
        return subscription(
            sub_id,
            status,
            start=start,
            customer=customer,
            prices=PRICE_SETS[k % len(PRICE_SETS)],
            cancel_at_period_end=cancel,
        )

    checkout = {
        "id": f"cs_hist_{k}",
        "object": "checkout.session",
        "customer": customer,
        "metadata": {"organization_id": str(history_organization(k))},
        "mode": "subscription",
    }
    kinds: dict[str, tuple[str, Event]] = {
        "checkout": ("checkout.session.completed", checkout),
        "created": ("customer.subscription.created", sub("active")),
        "past_due": ("customer.subscription.updated", sub("past_due")),
        "failed": ("invoice.payment_failed", invoice(invoice_id, sub_id, customer=customer)),
        "retry_failed": (
            "invoice.payment_failed",
            invoice(invoice_id, sub_id, customer=customer),
        ),
        "paid": (
            "invoice.paid",
            invoice(invoice_id, sub_id, customer=customer) | {"amount_paid": 4200},
        ),
        "active": ("customer.subscription.updated", sub("active", cancel=k % 2 == 1)),
        "canceled": (
            "customer.subscription.deleted",
            sub("canceled") | {"ended_at": created},
        ),
        "deleted": ("customer.deleted", {"id": customer, "object": "customer", "deleted": True}),
    }
    event_type, obj = kinds[step]
    return make_event(event_type, obj, created=created)


def life_histories(rng: random.Random) -> list[Event]:
    """Every organization's events, each organization's at distinct seconds (no two events of
    one object share a second, so no delivery needs Stripe asked); organizations overlap."""
    events = []
    for k, (steps, _) in enumerate(HISTORIES):
        start = T0 + (k % 4) * 2 * DAY
        created = start
        for step in steps:
            created += rng.randint(1, 90)
            events.append(step_event(step, k, start, created))
    return events


async def add_organizations(sessions: SessionFactory, rows: Sequence[Organization]) -> None:
    async with unit_of_work(sessions) as session:
        session.add_all(rows)


async def flush_redis(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


# What each organization was last told.
NOTIFIED = "SELECT organization_id, entitled, reason, until FROM notified_entitlements"
# What a run ends with: everything the deliveries may have written that must not depend on
# the order they arrived in. `billing_state_changes` is not here: an older event that arrives
# after a newer one is stale and logs nothing, so how many changes are logged depends on it.
# Nor are the notices: which changes an organization went through on the way depends on it too;
# what it was told last does not.
FINAL_STATE = {
    "stripe_subscriptions": """
        SELECT id, status, stripe_customer_id, current_period_start, current_period_end,
               cancel_at_period_end, metered_price_ids, ended_at, last_event_id,
               last_event_created
          FROM stripe_subscriptions ORDER BY id""",
    "stripe_invoices": """
        SELECT id, stripe_customer_id, stripe_subscription_id, payment_status, amount_due,
               amount_paid, currency, first_failed_at, last_event_id, last_event_created
          FROM stripe_invoices ORDER BY id""",
    "organizations": """
        SELECT id, stripe_customer_id, stripe_customer_event_created, stripe_customer_deleted_at
          FROM organizations ORDER BY id""",
    "stripe_events": "SELECT event_id FROM stripe_events ORDER BY event_id",
    "stripe_prices": "SELECT id FROM stripe_prices ORDER BY id",
    "notified_entitlements": f"{NOTIFIED} ORDER BY organization_id",
}
# (event, object) pairs logged more than once: none, in any order.
CHANGES_LOGGED_TWICE = """
    SELECT event_id, stripe_object_id, count(*) FROM billing_state_changes
     GROUP BY event_id, stripe_object_id HAVING count(*) > 1"""
# What an organization was last told is what its last notice said.
NOTIFIED_WITHOUT_ITS_NOTICE = """
    SELECT n.organization_id FROM notified_entitlements n
      LEFT JOIN entitlement_notices e ON e.job_id = n.job_id
     WHERE e.job_id IS NULL
        OR (e.organization_id, e.entitled, e.reason, e.until)
           IS DISTINCT FROM (n.organization_id, n.entitled, n.reason, n.until)"""


async def rows(sessions: SessionFactory, sql: str) -> list[tuple[Any, ...]]:
    async with sessions() as session:
        return [tuple(row) for row in await session.execute(text(sql))]


async def assert_rows(sessions: SessionFactory, sql: str, expected: Iterable[Any]) -> None:
    """The query's rows are `expected`, in any order."""
    assert sorted(await rows(sessions, sql), key=str) == sorted(expected, key=str)


async def final_state(sessions: SessionFactory) -> dict[str, list[tuple[Any, ...]]]:
    return {table: await rows(sessions, sql) for table, sql in FINAL_STATE.items()}


async def assert_each_change_logged_and_announced_once(
    sessions: SessionFactory, redis_url: str
) -> None:
    assert await rows(sessions, CHANGES_LOGGED_TWICE) == []
    assert await rows(sessions, NOTIFIED_WITHOUT_ITS_NOTICE) == []
    # Each notice's job was added (the product reads the queue, not the table).
    jobs = await queued_jobs(redis_url)
    await assert_rows(
        sessions, "SELECT job_id FROM entitlement_notices", [(job.id,) for job in jobs]
    )


def assert_each_processed_once(answered: Answered) -> None:
    """Every delivery answered 200, and each event processed by exactly one of its copies."""
    failed = [answer.text for _, answer in answered if answer.status_code != 200]
    assert failed == []
    processed = Counter(
        event["id"] for event, answer in answered if answer.json()["outcome"] == "processed"
    )
    assert processed == Counter({event["id"]: 1 for event, _ in answered})


def effects(answered: Answered) -> Counter[str]:
    return Counter(answer.json()["effect"] for _, answer in answered)


async def one_at_a_time(client: httpx.AsyncClient, arrivals: Sequence[Event]) -> Answered:
    return [(event, await deliver(client, event, secret=SECRET)) for event in arrivals]


async def all_at_once(client: httpx.AsyncClient, arrivals: Sequence[Event]) -> Answered:
    answers = await asyncio.gather(*(deliver(client, event, secret=SECRET) for event in arrivals))
    return list(zip(arrivals, answers, strict=True))


async def checkouts_first(client: httpx.AsyncClient, arrivals: Sequence[Event]) -> Answered:
    """The checkouts among `arrivals` at once, then, once they are answered, the rest at once."""
    checkouts = [event for event in arrivals if event["type"] == "checkout.session.completed"]
    rest = [event for event in arrivals if event["type"] != "checkout.session.completed"]
    return await all_at_once(client, checkouts) + await all_at_once(client, rest)


Deliveries = Callable[[httpx.AsyncClient, Sequence[Event]], Awaitable[Answered]]


@dataclass(frozen=True, slots=True)
class Run:
    answered: Answered
    state: dict[str, list[tuple[Any, ...]]]


async def run_from_scratch(
    settings: Settings,
    engine: AsyncEngine,
    sessions: SessionFactory,
    redis_url: str,
    arrivals: Sequence[Event],
    deliveries: Deliveries,
) -> Run:
    """An empty database and queue, the organizations, a new app process (nothing remembered
    of the other run's answers) at HISTORY_NOW, the deliveries; what they left."""
    await empty_tables(engine)
    await flush_redis(redis_url)
    await add_organizations(
        sessions,
        [Organization(id=history_organization(k), name=f"Org {k}") for k in range(len(HISTORIES))],
    )
    async with running_app(settings) as (app, client):
        app.state.clock = lambda: at(HISTORY_NOW)
        answered = await deliveries(client, arrivals)
    assert_each_processed_once(answered)
    await assert_each_change_logged_and_announced_once(sessions, redis_url)
    return Run(answered, await final_state(sessions))


async def test_many_histories_delivered_at_once_shuffled_and_twice_end_as_delivered_in_order(
    settings: Settings, engine: AsyncEngine, sessions: SessionFactory, redis_url: str
) -> None:
    rng = random.Random(SEED)
    events = life_histories(rng)
    in_stripes_order = sorted(events, key=lambda event: event["created"])
    shuffled = [event for event in events for _ in range(COPIES)]
    rng.shuffle(shuffled)

    in_order = await run_from_scratch(
        settings, engine, sessions, redis_url, in_stripes_order, one_at_a_time
    )
    at_once = await run_from_scratch(settings, engine, sessions, redis_url, shuffled, all_at_once)
    linked_first = await run_from_scratch(
        settings, engine, sessions, redis_url, shuffled, checkouts_first
    )

    told = {org: reason for org, _, reason, _ in in_order.state["notified_entitlements"]}
    assert [told.get(history_organization(k)) for k in range(len(HISTORIES))] == [
        reason for _, reason in HISTORIES
    ]
    assert len(in_order.state["stripe_events"]) == len(events)
    first_failures: dict[str, datetime] = {}
    for event in events:
        if event["type"] == "invoice.payment_failed":
            failed_at = at(event["created"])
            invoice_id = event["data"]["object"]["id"]
            first_failures[invoice_id] = min(first_failures.get(invoice_id, failed_at), failed_at)
    assert {row[0]: row[7] for row in in_order.state["stripe_invoices"]} == first_failures
    # In Stripe's order no event is older than the state it finds; shuffled, some are.
    assert "stale" not in effects(in_order.answered)
    assert effects(at_once.answered)["stale"] > 0
    assert effects(linked_first.answered)["stale"] > 0
    for table in FINAL_STATE:
        assert at_once.state[table] == in_order.state[table], table
        assert linked_first.state[table] == in_order.state[table], table


# --- Bursts of one event type across many objects ------------------------------------------

BURST_NOW = T0 + 60
LINKED = 40
UNLINKED = 4  # customers no organization holds: their effects are logged with no organization
BURST_STATUSES = ("active", "past_due", "trialing", "incomplete")
# What each status entitles to once its subscription is created (at T0 + 10, no failure known).
ENTITLED_AT_CREATION: dict[str, tuple[bool, str, datetime | None]] = {
    "active": (True, "active", None),
    "past_due": (True, "past_due_grace", at(T0 + 10) + GRACE),
    "trialing": (True, "trialing", None),
    "incomplete": (False, "incomplete", None),
}
CUSTOMER_DELETED = (False, "customer_deleted", None)


async def test_a_burst_of_one_event_type_across_many_objects_gives_each_object_its_own_effect(
    settings: Settings, sessions: SessionFactory, redis_url: str
) -> None:
    rng = random.Random(SEED)
    customers = [f"cus_burst_{i}" for i in range(LINKED + UNLINKED)]
    organizations = [uuid.uuid4() for _ in range(LINKED)]
    await add_organizations(
        sessions,
        [
            Organization(id=org, name=f"Burst {i}", stripe_customer_id=customers[i])
            for i, org in enumerate(organizations)
        ],
    )
    holder: list[uuid.UUID | None] = [*organizations, *[None] * UNLINKED]
    statuses = [BURST_STATUSES[i % len(BURST_STATUSES)] for i in range(len(customers))]
    # Every event of a burst from one second: the objects differ, so none is older.
    created = [
        make_event(
            "customer.subscription.created",
            subscription(f"sub_burst_{i}", statuses[i], customer=customer, prices=[SENSORS]),
            created=T0 + 10,
        )
        for i, customer in enumerate(customers)
    ]
    failed = [
        make_event(
            "invoice.payment_failed",
            invoice(f"in_burst_{i}", f"sub_burst_{i}", customer=customer),
            created=T0 + 20,
        )
        for i, customer in enumerate(customers)
    ]
    deleted = [
        make_event(
            "customer.deleted",
            {"id": customer, "object": "customer", "deleted": True},
            created=T0 + 30,
        )
        for customer in customers
    ]

    async with running_app(settings) as (app, client):
        app.state.clock = lambda: at(BURST_NOW)
        for burst in (created, failed, deleted):
            arrivals = [event for event in burst for _ in range(COPIES)]
            rng.shuffle(arrivals)
            assert_each_processed_once(await all_at_once(client, arrivals))

    await assert_rows(
        sessions,
        "SELECT id, stripe_customer_id, status, last_event_id FROM stripe_subscriptions",
        [
            (f"sub_burst_{i}", customer, statuses[i], created[i]["id"])
            for i, customer in enumerate(customers)
        ],
    )
    await assert_rows(
        sessions,
        "SELECT id, stripe_customer_id, stripe_subscription_id, payment_status,"
        " first_failed_at, last_event_id FROM stripe_invoices",
        [
            (
                f"in_burst_{i}",
                customer,
                f"sub_burst_{i}",
                "payment_failed",
                at(T0 + 20),
                event["id"],
            )
            for i, (customer, event) in enumerate(zip(customers, failed, strict=True))
        ],
    )
    await assert_rows(
        sessions,
        "SELECT id, stripe_customer_id, stripe_customer_deleted_at FROM organizations",
        [(org, customers[i], at(T0 + 30)) for i, org in enumerate(organizations)],
    )
    # One change per applied event, on its own object, for the organization holding it.
    await assert_rows(
        sessions,
        "SELECT event_id, stripe_object_id, organization_id FROM billing_state_changes",
        [
            *((event["id"], f"sub_burst_{i}", holder[i]) for i, event in enumerate(created)),
            *((event["id"], f"in_burst_{i}", holder[i]) for i, event in enumerate(failed)),
            *((event["id"], customers[i], holder[i]) for i, event in enumerate(deleted)),
        ],
    )
    # One notice per change of an organization's entitlement, made by its own event: only a
    # past-due subscription's grace moves with the failed invoice.
    expected_notices = []
    for i, org in enumerate(organizations):
        expected_notices.append((org, created[i]["id"], *ENTITLED_AT_CREATION[statuses[i]]))
        if statuses[i] == "past_due":
            grace_from_failure = (True, "past_due_grace", at(T0 + 20) + GRACE)
            expected_notices.append((org, failed[i]["id"], *grace_from_failure))
        expected_notices.append((org, deleted[i]["id"], *CUSTOMER_DELETED))
    assert len(expected_notices) == 2 * LINKED + LINKED // len(BURST_STATUSES)
    await assert_rows(
        sessions,
        "SELECT organization_id, event_id, entitled, reason, until FROM entitlement_notices",
        expected_notices,
    )
    await assert_each_change_logged_and_announced_once(sessions, redis_url)


# --- One customer's objects at once, newest first ------------------------------------------

CUSTOMERS_AT_ONCE = 6


def customer_story(i: int, t: int) -> list[Event]:
    """One customer's subscription and invoice events, one second apart, in Stripe's order:
    created active, a payment fails, past_due, Stripe's retry fails and a payment goes through
    in one second (paid is final, so no order of the two is needed), active again and set to
    cancel at the period's end."""
    customer, sub_id, invoice_id = f"cus_once_{i}", f"sub_once_{i}", f"in_once_{i}"
    bill = invoice(invoice_id, sub_id, customer=customer)
    return [
        make_event(
            "customer.subscription.created",
            subscription(sub_id, "active", customer=customer),
            created=t,
        ),
        make_event("invoice.payment_failed", bill, created=t + 1),
        make_event(
            "customer.subscription.updated",
            subscription(sub_id, "past_due", customer=customer),
            created=t + 2,
        ),
        make_event("invoice.payment_failed", bill, created=t + 3),
        make_event("invoice.paid", bill | {"amount_paid": 4200}, created=t + 3),
        make_event(
            "customer.subscription.updated",
            subscription(sub_id, "active", customer=customer, cancel_at_period_end=True),
            created=t + 4,
        ),
    ]


async def test_one_customers_subscription_and_invoice_events_at_once_newest_first_end_newest(
    settings: Settings, sessions: SessionFactory, redis_url: str
) -> None:
    t = T0 + 100
    organizations = [uuid.uuid4() for _ in range(CUSTOMERS_AT_ONCE)]
    await add_organizations(
        sessions,
        [
            Organization(id=org, name=f"Once {i}", stripe_customer_id=f"cus_once_{i}")
            for i, org in enumerate(organizations)
        ],
    )
    stories = [customer_story(i, t) for i in range(CUSTOMERS_AT_ONCE)]
    # Newest first, the customers interleaved, then every event again.
    newest_first = [
        event for moment in zip(*(s[::-1] for s in stories), strict=True) for event in moment
    ]

    async with running_app(settings) as (app, client):
        app.state.clock = lambda: at(t + 60)
        assert_each_processed_once(await all_at_once(client, newest_first * COPIES))

    await assert_rows(
        sessions,
        "SELECT id, status, cancel_at_period_end, last_event_id, last_event_created"
        " FROM stripe_subscriptions",
        [
            (f"sub_once_{i}", "active", True, story[5]["id"], at(t + 4))
            for i, story in enumerate(stories)
        ],
    )
    await assert_rows(
        sessions,
        "SELECT id, payment_status, amount_paid, first_failed_at, last_event_id"
        " FROM stripe_invoices",
        # Paid, with what was paid, and its first failure kept however late it arrived.
        [
            (f"in_once_{i}", "paid", 4200, at(t + 1), story[4]["id"])
            for i, story in enumerate(stories)
        ],
    )
    await assert_rows(
        sessions,
        NOTIFIED,
        [(org, True, "active", at(T0 + PERIOD)) for org in organizations],
    )
    await assert_each_change_logged_and_announced_once(sessions, redis_url)


# --- Races between two API processes, each made to happen every time ----------------------

# How long a delivery held at a checkpoint waits for the other one. The other may be waiting
# for this one's lock, and then comes only after this one commits: after this long the held
# delivery goes on alone, so the test does not hang when the locks keep the two apart.
HOLD_SECONDS = 2.0


async def wait_briefly(happened: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(happened.wait(), HOLD_SECONDS)


class Meeting:
    """Deliveries that each arrive here go on together once all have arrived."""

    def __init__(self, parties: int) -> None:
        self.missing = parties
        self.everyone_here = asyncio.Event()

    async def arrive(self) -> None:
        self.missing -= 1
        if self.missing == 0:
            self.everyone_here.set()
        await wait_briefly(self.everyone_here)


@contextlib.asynccontextmanager
async def two_api_processes(
    settings: Settings, now: int
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two instances of the app on one database and Redis, as two API replicas
    (tests/webhooks/test_api_replicas.py), with their clock at `now`. Each groups only its own
    deliveries (webhooks/groups.py): an event sent to each is kept from the other only by
    PostgreSQL's locks."""
    async with running_app(settings) as (one, first), running_app(settings) as (other, second):
        apps: tuple[FastAPI, FastAPI] = (one, other)
        for app in apps:
            app.state.clock = lambda: at(now)
        yield first, second


async def one_to_each(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], events: tuple[Event, Event]
) -> Answered:
    """The first event to the first process and the second to the second, at once."""
    to_each = zip(clients, events, strict=True)
    answers = await asyncio.gather(*(deliver(c, event, secret=SECRET) for c, event in to_each))
    return list(zip(events, answers, strict=True))


async def test_two_objects_of_one_organization_changed_at_once_do_not_deadlock(
    settings: Settings, sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscription's and an invoice's event of one organization, one to each process.
    Each handler's change-log row takes a key-share lock on the organization's row (its
    foreign key), and the entitlement check then locks that row for update: two such
    transactions at once would each wait for the other's key-share lock, and PostgreSQL would
    abort one (a 500). Each locks the customer first, so the second waits before it writes."""
    org = uuid.uuid4()
    await add_organizations(
        sessions, [Organization(id=org, name="Locks", stripe_customer_id="cus_lock")]
    )
    # Each handler has written its change before it checks the entitlement, and waits there
    # for the other: the moment two deliveries of one organization reach it together by chance.
    both_handled = Meeting(2)
    notice = EntitlementNotifier.notice

    async def notice_once_both_handled(
        notifier: EntitlementNotifier, connection: Driver, event: StripeEventEnvelope
    ) -> NoticeRow | None:
        await both_handled.arrive()
        return await notice(notifier, connection, event)

    monkeypatch.setattr(EntitlementNotifier, "notice", notice_once_both_handled)
    sub = subscription("sub_lock", "active", customer="cus_lock")
    bill = invoice("in_lock", "sub_lock", customer="cus_lock")
    events = (
        make_event("customer.subscription.created", sub, created=T0),
        make_event("invoice.payment_failed", bill, created=T0 + 1),
    )
    async with two_api_processes(settings, T0 + 60) as clients:
        answered = await one_to_each(clients, events)

    assert_each_processed_once(answered)
    assert effects(answered) == Counter({"applied": 2})
    # Active, though a payment failed: entitled, and told so once each change was committed.
    await assert_rows(sessions, NOTIFIED, [(org, True, "active", None)])


async def test_a_subscription_handled_while_its_checkout_links_the_organization_is_announced(
    settings: Settings, sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkout linking an organization to its customer and the customer's subscription,
    one to each process. Were both written at once, the subscription's check would find no
    organization holding the customer (the link is not committed) and the checkout's check no
    subscription (nor is it): the organization would never be told it is entitled. Both lock
    the customer first, so the one that comes second sees what the first committed."""
    org = uuid.uuid4()
    await add_organizations(sessions, [Organization(id=org, name="Linking")])
    checkout = {
        "id": "cs_link",
        "object": "checkout.session",
        "customer": "cus_link",
        "metadata": {"organization_id": str(org)},
    }
    sub = subscription("sub_link", "active", customer="cus_link")
    events = (
        make_event("checkout.session.completed", checkout, created=T0 + 1),
        make_event("customer.subscription.created", sub, created=T0),
    )
    # Both handlers have written before either checks; the subscription's check reads first,
    # and its transaction commits only after the checkout's check has read.
    both_handled = Meeting(2)
    subscription_checked, checkout_checked = asyncio.Event(), asyncio.Event()
    notice = EntitlementNotifier.notice

    async def notice_in_turn(
        notifier: EntitlementNotifier, connection: Driver, event: StripeEventEnvelope
    ) -> NoticeRow | None:
        await both_handled.arrive()
        if event.type == "checkout.session.completed":
            await wait_briefly(subscription_checked)
            found = await notice(notifier, connection, event)
            checkout_checked.set()
        else:
            found = await notice(notifier, connection, event)
            subscription_checked.set()
            await wait_briefly(checkout_checked)
        return found

    monkeypatch.setattr(EntitlementNotifier, "notice", notice_in_turn)
    async with two_api_processes(settings, T0 + 60) as clients:
        answered = await one_to_each(clients, events)

    assert_each_processed_once(answered)
    assert effects(answered) == Counter({"applied": 2})
    await assert_rows(sessions, NOTIFIED, [(org, True, "active", None)])


async def test_a_late_first_payment_failure_moves_the_grace_end_the_organization_was_told(
    settings: Settings, sessions: SessionFactory
) -> None:
    """The grace period counts from an invoice's first failure, however late its event
    arrives: an older failure is stale for the rest of the invoice but moves that start, and
    the organization is told the earlier grace end."""
    org = uuid.uuid4()
    await add_organizations(
        sessions, [Organization(id=org, name="Late failure", stripe_customer_id="cus_late")]
    )
    bill = invoice("in_late", "sub_late", customer="cus_late")
    async with running_app(settings) as (app, client):
        app.state.clock = lambda: at(T0 + 4 * DAY)
        await send(
            client,
            "customer.subscription.updated",
            subscription("sub_late", "past_due", customer="cus_late"),
            T0 + 10,
        )
        # Stripe's retry three days later fails too, and its event arrives first.
        await send(client, "invoice.payment_failed", bill, T0 + 3 * DAY)
        await send(client, "invoice.payment_failed", bill, T0 + 20)

    await assert_rows(
        sessions,
        NOTIFIED,
        [(org, True, "past_due_grace", at(T0 + 20) + GRACE)],
    )
