"""Exactly once under concurrency and failure."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from sensor_billing.db import SessionFactory
from sensor_billing.db.schema import StripeSubscription
from sensor_billing.webhooks import handlers
from sensor_billing.webhooks.envelope import StripeEventEnvelope
from tests.support.state import count, snapshot
from tests.support.stripe_events import deliver, make_event
from tests.webhooks.conftest import SECRET

T0 = 1_764_000_000


def invoice_paid() -> dict[str, Any]:
    invoice = {"id": "in_once", "object": "invoice", "customer": "cus_once", "amount_due": 900}
    return make_event("invoice.paid", invoice, created=T0)


async def test_fifty_concurrent_deliveries_of_one_event_have_one_effect(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    event = invoice_paid()
    responses = await asyncio.gather(*(deliver(client, event, secret=SECRET) for _ in range(50)))

    assert [response.status_code for response in responses] == [200] * 50
    outcomes = sorted(response.json()["outcome"] for response in responses)
    assert outcomes == ["duplicate"] * 49 + ["processed"]
    assert await count(sessions, "stripe_events", f"event_id = '{event['id']}'") == 1
    assert await count(sessions, "billing_state_changes", "stripe_object_id = 'in_once'") == 1
    assert await count(sessions, "stripe_invoices") == 1


async def test_failing_handler_leaves_no_row_answers_500_and_a_redelivery_succeeds(
    client: httpx.AsyncClient, sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = handlers.HANDLERS["invoice.paid"]

    async def crashes_after_writing(session: Any, event: StripeEventEnvelope) -> Any:
        await original(session, event)  # the state change is written, then the handler fails
        raise RuntimeError("simulated crash inside the handler")

    event = invoice_paid()
    before = await snapshot(sessions)
    monkeypatch.setitem(handlers.HANDLERS, "invoice.paid", crashes_after_writing)
    failed = await deliver(client, event, secret=SECRET)
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "internal_error"
    assert await snapshot(sessions) == before  # no stripe_events row, no state change

    monkeypatch.setitem(handlers.HANDLERS, "invoice.paid", original)
    retried = await deliver(client, event, secret=SECRET)
    assert retried.status_code == 200
    assert retried.json()["outcome"] == "processed"
    assert await count(sessions, "stripe_events") == 1
    assert await count(sessions, "billing_state_changes") == 1


async def test_concurrent_deliveries_while_the_first_fails_still_apply_once(
    client: httpx.AsyncClient, sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = handlers.HANDLERS["invoice.paid"]
    calls = 0

    async def first_call_fails(session: Any, event: StripeEventEnvelope) -> Any:
        nonlocal calls
        calls += 1
        result = await original(session, event)
        if calls == 1:
            await asyncio.sleep(0.05)  # others now wait on the unique index
            raise RuntimeError("first delivery crashes")
        return result

    monkeypatch.setitem(handlers.HANDLERS, "invoice.paid", first_call_fails)
    event = invoice_paid()
    responses = await asyncio.gather(*(deliver(client, event, secret=SECRET) for _ in range(10)))
    codes = sorted(response.status_code for response in responses)
    assert codes.count(500) == 1
    assert codes.count(200) == 9
    assert [r.json()["outcome"] for r in responses if r.status_code == 200].count("processed") == 1
    assert await count(sessions, "stripe_events") == 1
    assert await count(sessions, "billing_state_changes") == 1


async def test_concurrent_different_events_for_one_subscription_end_at_the_newest(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    def update(status: str, created: int) -> dict[str, Any]:
        sub = {"id": "sub_race", "object": "subscription", "customer": "cus_race", "status": status}
        return make_event("customer.subscription.updated", sub, created=created)

    statuses = ["active", "past_due", "unpaid", "active", "past_due"] * 6
    events = [update(status, T0 + index) for index, status in enumerate(statuses)]
    newest = events[-1]
    shuffled = events[1::2] + events[::2]  # the newest is not the last to arrive
    responses = await asyncio.gather(*(deliver(client, e, secret=SECRET) for e in shuffled))

    assert {response.status_code for response in responses} == {200}
    async with sessions() as session:
        row = await session.get(StripeSubscription, "sub_race")
    assert row is not None
    assert row.last_event_id == newest["id"]
    assert row.status == "past_due"
