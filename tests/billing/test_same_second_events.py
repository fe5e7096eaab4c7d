"""Events of one subscription from the same second, delivered in any order, leave what Stripe
says now, and the entitlement that follows from it.

Stripe's `created` has one-second resolution, so a watermark cannot order two events of one
second. The stand-in, its clock frozen, makes a renewal whose payment fails (`past_due`) and
then goes through (`active`) within one second: four events (`invoice.payment_failed`,
`customer.subscription.updated` past_due, `invoice.paid`, `customer.subscription.updated`
active), each carrying the snapshot of its moment. They are delivered signed to the app in every
order; the app fetches the subscription from the stand-in over HTTP when it cannot tell.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import text

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import FaultPlan, RunningStandin
from sensor_billing.devtools.stripe_standin.faults import FaultTarget
from sensor_billing.stripe_api.setup import SetupOptions, set_up_stripe
from tests.billing.conftest import Api
from tests.billing.stripe_subscriptions import (
    Subscribed,
    deliver_standin_events,
    standin_control,
    subscribe_in_standin,
)
from tests.support.stripe_events import deliver
from tests.webhooks.conftest import SECRET

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)

# The order the stand-in makes them in (indexes into `same_second_recovery`'s answer).
FAILED_INVOICE, PAST_DUE, PAID_INVOICE, ACTIVE = range(4)
ENTITLED_ACTIVE = {"entitled": True, "reason": "active", "until": None}
SUBSCRIPTION_READS_FAIL = FaultPlan(server_error=1.0, targets=(FaultTarget.SUBSCRIPTIONS,))


Subscribe = Callable[[], Awaitable[Subscribed]]


@pytest.fixture
async def subscribe(
    standin_api: Api,
    stripe_client: stripe.StripeClient,
    standin: RunningStandin,
    sessions: SessionFactory,
) -> Subscribe:
    """Makes a new customer's subscription, its events delivered (`stripe setup` done once)."""
    setup = await set_up_stripe(stripe_client, SetupOptions())

    async def subscribed() -> Subscribed:
        return await subscribe_in_standin(standin_api, stripe_client, standin, sessions, setup)

    return subscribed


async def same_second_recovery(control: httpx.AsyncClient, subscription_id: str) -> list[str]:
    """A renewal whose payment fails and then goes through, all in one second of the stand-in's
    clock; the four events' ids, made and not delivered."""
    made: list[str] = []
    await control.post("/_standin/clock", json={"freeze": True})
    try:
        for change in ("payment_failed", "payment_succeeded"):
            answer = await control.post(
                f"/_standin/subscriptions/{subscription_id}/{change}", json={"deliver": False}
            )
            assert answer.status_code == 200, answer.text
            made += answer.json()["events"]
    finally:
        await control.post("/_standin/clock", json={"freeze": False})
    events = [(await control.get(f"/v1/events/{event_id}")).json() for event_id in made]
    assert [event["type"] for event in events] == [
        "invoice.payment_failed",
        "customer.subscription.updated",
        "invoice.paid",
        "customer.subscription.updated",
    ]
    assert len({event["created"] for event in events}) == 1
    assert events[PAST_DUE]["data"]["object"]["status"] == "past_due"
    assert events[ACTIVE]["data"]["object"]["status"] == "active"
    return made


async def stripe_status(control: httpx.AsyncClient, subscription_id: str) -> str:
    status: str = (await control.get(f"/v1/subscriptions/{subscription_id}")).json()["status"]
    return status


async def billing_of(api: Api, subscribed: Subscribed) -> tuple[str, dict[str, Any]]:
    answer = await api.billing(subscribed.organization_id)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body["subscription"]["status"], body["entitlement"]


async def count(sessions: SessionFactory, table: str, event_id: str) -> int:
    async with sessions() as session:
        found = await session.scalar(
            text(f"SELECT count(*) FROM {table} WHERE event_id = :id"),
            {"id": event_id},
        )
    return int(found or 0)


async def notice_reasons(sessions: SessionFactory, event_id: str) -> list[str]:
    async with sessions() as session:
        found = await session.scalars(
            text("SELECT reason FROM entitlement_notices WHERE event_id = :id"), {"id": event_id}
        )
    return list(found)


async def test_same_second_events_in_every_order_leave_what_stripe_says_now(
    standin_api: Api, standin: RunningStandin, sessions: SessionFactory, subscribe: Subscribe
) -> None:
    seen: dict[tuple[int, ...], tuple[str, str, dict[str, Any]]] = {}
    for order in itertools.permutations(range(4)):
        subscribed = await subscribe()
        async with standin_control(standin) as control:
            made = await same_second_recovery(control, subscribed.subscription_id)
            answers = await deliver_standin_events(
                standin_api, control, [made[index] for index in order]
            )
            assert [answer.status_code for answer in answers] == [200] * 4, order
            now = await stripe_status(control, subscribed.subscription_id)
        seen[order] = (now, *await billing_of(standin_api, subscribed))

    # Stripe says active; so must the app, and entitle the organization, whatever the order.
    assert seen == {order: ("active", "active", ENTITLED_ACTIVE) for order in seen}


async def test_a_same_second_event_whose_fetch_fails_answers_502_writes_nothing_and_is_redelivered(
    standin_api: Api, standin: RunningStandin, sessions: SessionFactory, subscribe: Subscribe
) -> None:
    subscribed = await subscribe()
    async with standin_control(standin) as control:
        made = await same_second_recovery(control, subscribed.subscription_id)
        first = [made[FAILED_INVOICE], made[PAID_INVOICE], made[ACTIVE]]
        answers = await deliver_standin_events(standin_api, control, first)
        assert [answer.status_code for answer in answers] == [200] * 3
        past_due = (await control.get(f"/v1/events/{made[PAST_DUE]}")).json()

        standin.state.set_faults(SUBSCRIPTION_READS_FAIL)
        refused = await deliver(standin_api.client, past_due, secret=SECRET)

        assert refused.status_code == 502, refused.text
        assert refused.json()["error"]["code"] == "event_fetch_failed"
        assert await count(sessions, "stripe_events", past_due["id"]) == 0
        assert await count(sessions, "billing_state_changes", past_due["id"]) == 0
        assert await billing_of(standin_api, subscribed) == ("active", ENTITLED_ACTIVE)

        standin.state.set_faults(FaultPlan())
        redelivered = await deliver(standin_api.client, past_due, secret=SECRET)
        again = await deliver(standin_api.client, past_due, secret=SECRET)

        assert redelivered.status_code == 200, redelivered.text
        assert redelivered.json()["outcome"] == "processed"
        assert again.json()["outcome"] == "duplicate"
        assert await count(sessions, "stripe_events", past_due["id"]) == 1
        assert await stripe_status(control, subscribed.subscription_id) == "active"
    assert await billing_of(standin_api, subscribed) == ("active", ENTITLED_ACTIVE)


async def one_of_two_delivered(
    api: Api, standin: RunningStandin, subscribe: Subscribe, *, delivered: int, kept: int
) -> tuple[Subscribed, dict[str, Any]]:
    """A same-second recovery of a new subscription, the subscription event `delivered` sent;
    the subscription and the event `kept`, not sent."""
    subscribed = await subscribe()
    async with standin_control(standin) as control:
        made = await same_second_recovery(control, subscribed.subscription_id)
        [answer] = await deliver_standin_events(api, control, [made[delivered]])
        assert answer.status_code == 200, answer.text
        return subscribed, (await control.get(f"/v1/events/{made[kept]}")).json()


async def test_concurrent_deliveries_of_a_same_second_event_have_one_effect(
    standin_api: Api, standin: RunningStandin, sessions: SessionFactory, subscribe: Subscribe
) -> None:
    subscribed, active = await one_of_two_delivered(
        standin_api, standin, subscribe, delivered=PAST_DUE, kept=ACTIVE
    )

    answers = await asyncio.gather(
        *(deliver(standin_api.client, active, secret=SECRET) for _ in range(8))
    )

    assert [answer.status_code for answer in answers] == [200] * 8
    assert sorted(answer.json()["outcome"] for answer in answers) == ["duplicate"] * 7 + [
        "processed"
    ]
    assert await count(sessions, "stripe_events", active["id"]) == 1
    assert await count(sessions, "billing_state_changes", active["id"]) == 1
    assert await billing_of(standin_api, subscribed) == ("active", ENTITLED_ACTIVE)
    # The product hears of the change the fetched state made (past-due grace to active), once.
    assert await notice_reasons(sessions, active["id"]) == ["active"]


async def test_a_second_copy_of_a_change_from_the_same_second_applies_without_asking_stripe(
    standin_api: Api, standin: RunningStandin, subscribe: Subscribe
) -> None:
    # Stripe occasionally makes two Event objects for one change: they agree, so no fetch.
    _, copy = await one_of_two_delivered(
        standin_api, standin, subscribe, delivered=ACTIVE, kept=ACTIVE
    )
    copy["id"] = f"{copy['id']}_copy"
    standin.state.set_faults(SUBSCRIPTION_READS_FAIL)

    answer = await deliver(standin_api.client, copy, secret=SECRET)

    assert answer.status_code == 200, answer.text
    assert (answer.json()["outcome"], answer.json()["effect"]) == ("processed", "unchanged")
