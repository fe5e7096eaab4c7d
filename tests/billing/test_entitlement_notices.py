"""Entitlement notices (`billing/entitlement_notices.py`): signed webhooks through the app's
endpoint on real PostgreSQL and Redis; the `billing:entitlement-changed` job is added only
after the delivery's commit, once per change, and the worker's checks add what no webhook
does (a grace period's end) and what a lost add left out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from sensor_billing.billing.entitlement_notices import notice_grace_ends, sweep_entitlement_notices
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import EntitlementNotice
from sensor_billing.jobs import QueueNames
from sensor_billing.jobs.connection import open_queue
from sensor_billing.settings import Settings
from tests.billing.conftest import Api, ApiFactory
from tests.support.billing_events import ENTITLEMENT_CHANGED_KEYS, queued_jobs, read_with_node
from tests.support.billing_state import (
    CUSTOMER,
    GRACE,
    SENSORS,
    T0,
    at,
    invoice,
    new_organization,
    send,
    subscription,
)
from tests.support.stripe_events import deliver, make_event
from tests.webhooks.conftest import SECRET

DAY = 86_400
# Nothing listens here: adding a job to it fails at once.
UNREACHABLE_REDIS = "redis://127.0.0.1:9/15"


async def notices(sessions: SessionFactory) -> list[EntitlementNotice]:
    async with sessions() as session:
        found = await session.scalars(
            select(EntitlementNotice).order_by(EntitlementNotice.created_at)
        )
        return list(found)


async def test_a_subscription_that_entitles_an_organization_adds_one_job(
    api: Api, redis_url: str
) -> None:
    org = await new_organization(api.app.state.sessions, CUSTOMER)
    api.at(T0)
    event = make_event("customer.subscription.created", subscription("sub_a", "active"), created=T0)

    first = await deliver(api.client, event, secret=SECRET)
    again = await deliver(api.client, event, secret=SECRET)

    assert first.status_code == again.status_code == 200
    jobs = await queued_jobs(redis_url)
    assert [(job.id, job.name) for job in jobs] == [
        (f"entitlement-{event['id']}-{org}", "billing:entitlement-changed")
    ]
    assert jobs[0].data == {
        "organizationId": str(org),
        "entitled": True,
        "reason": "active",
        "until": None,
        "eventId": event["id"],
        "decidedAt": "2025-11-24T16:00:00Z",
    }
    assert set(jobs[0].data) == ENTITLEMENT_CHANGED_KEYS


async def test_a_change_that_leaves_the_entitlement_alone_adds_no_job(
    api: Api, redis_url: str
) -> None:
    await new_organization(api.app.state.sessions, CUSTOMER)
    api.at(T0 + 60)
    await send(api.client, "customer.subscription.created", subscription("sub_a", "active"), T0)
    # State changes (the invoice is new, the prices are new) but the organization stays active.
    await send(api.client, "invoice.paid", invoice("in_1", "sub_a"), T0 + 1)
    active = subscription("sub_a", "active", prices=[SENSORS])
    await send(api.client, "customer.subscription.updated", active, T0 + 2)

    assert [job.data["reason"] for job in await queued_jobs(redis_url)] == ["active"]


async def test_past_due_is_a_change_and_the_grace_end_is_another(
    api: Api, redis_url: str, settings: Settings
) -> None:
    org = await new_organization(api.app.state.sessions, CUSTOMER)
    api.at(T0 + 60)
    await send(api.client, "customer.subscription.created", subscription("sub_a", "active"), T0)
    await send(api.client, "invoice.payment_failed", invoice("in_1", "sub_a"), T0 + 10)
    await send(
        api.client, "customer.subscription.updated", subscription("sub_a", "past_due"), T0 + 10
    )
    engine = api.app.state.engine
    queue = open_queue(redis_url, QueueNames.BILLING_EVENTS)
    try:
        grace_end = at(T0 + 10) + GRACE
        before_end = await notice_grace_ends(
            engine, queue, now=grace_end - timedelta(seconds=1), grace=GRACE
        )
        at_end = await notice_grace_ends(engine, queue, now=grace_end, grace=GRACE)
        checked_again = await notice_grace_ends(engine, queue, now=grace_end, grace=GRACE)
    finally:
        await queue.close()

    assert (before_end, at_end, checked_again) == (0, 1, 0)
    jobs = await queued_jobs(redis_url)
    assert [(job.data["entitled"], job.data["reason"], job.data["until"]) for job in jobs] == [
        (True, "active", None),
        (True, "past_due_grace", "2025-12-01T16:00:10Z"),
        (False, "past_due_grace_ended", None),
    ]
    assert jobs[-1].id == f"entitlement-grace-{org}-20251201T160010000000Z"
    assert jobs[-1].data["eventId"] is None


@pytest.fixture
async def failing_commit(sessions: SessionFactory) -> AsyncIterator[None]:
    """Every transaction that wrote a notice fails at its commit (a deferred constraint
    trigger): the moment after the notice is written and before anything may be enqueued."""
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "CREATE FUNCTION fail_notice() RETURNS trigger LANGUAGE plpgsql AS"
                " $$BEGIN RAISE EXCEPTION 'commit refused'; END$$"
            )
        )
        await session.execute(
            text(
                "CREATE CONSTRAINT TRIGGER fail_notice AFTER INSERT ON entitlement_notices"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_notice()"
            )
        )
    yield
    async with unit_of_work(sessions) as session:
        await session.execute(text("DROP TRIGGER IF EXISTS fail_notice ON entitlement_notices"))
        await session.execute(text("DROP FUNCTION IF EXISTS fail_notice()"))


async def test_a_delivery_whose_commit_fails_adds_no_job_and_its_retry_adds_one(
    api: Api, redis_url: str, sessions: SessionFactory, failing_commit: None
) -> None:
    await new_organization(api.app.state.sessions, CUSTOMER)
    api.at(T0)
    event = make_event("customer.subscription.created", subscription("sub_a", "active"), created=T0)

    refused = await deliver(api.client, event, secret=SECRET)
    jobs_after_refusal = await queued_jobs(redis_url)
    async with unit_of_work(sessions) as session:
        await session.execute(text("DROP TRIGGER fail_notice ON entitlement_notices"))
    retried = await deliver(api.client, event, secret=SECRET)

    assert refused.status_code == 500
    assert jobs_after_refusal == []
    assert retried.status_code == 200
    assert [job.data["eventId"] for job in await queued_jobs(redis_url)] == [event["id"]]
    assert len(await notices(sessions)) == 1


async def test_the_sweep_adds_the_job_whose_add_was_lost(
    api_settings: Settings, api_factory: ApiFactory, redis_url: str, sessions: SessionFactory
) -> None:
    no_redis = api_settings.model_copy(update={"redis_url": UNREACHABLE_REDIS})
    async with api_factory(no_redis) as api:
        org = await new_organization(sessions, CUSTOMER)
        api.at(T0)
        event = make_event(
            "customer.subscription.created", subscription("sub_a", "active"), created=T0
        )
        answer = await deliver(api.client, event, secret=SECRET)
        engine = api.app.state.engine
        queue = open_queue(redis_url, QueueNames.BILLING_EVENTS)
        try:
            [lost] = await notices(sessions)
            jobs_before = await queued_jobs(redis_url)
            too_young = await sweep_entitlement_notices(engine, queue, now=lost.created_at)
            swept = await sweep_entitlement_notices(
                engine, queue, now=lost.created_at + timedelta(minutes=2)
            )
            swept_again = await sweep_entitlement_notices(
                engine, queue, now=lost.created_at + timedelta(minutes=3)
            )
        finally:
            await queue.close()

    assert answer.status_code == 200  # the change is committed: Stripe must not resend it
    assert lost.enqueued_at is None
    assert jobs_before == []
    assert (too_young, swept, swept_again) == (0, 1, 0)
    jobs = await queued_jobs(redis_url)
    assert [(job.id, job.data["organizationId"]) for job in jobs] == [(lost.job_id, str(org))]
    [marked] = await notices(sessions)
    assert marked.enqueued_at is not None


async def test_the_sweep_marks_a_job_the_api_added_without_adding_it_again(
    api: Api, redis_url: str, sessions: SessionFactory
) -> None:
    await new_organization(api.app.state.sessions, CUSTOMER)
    api.at(T0)
    await send(api.client, "customer.subscription.created", subscription("sub_a", "active"), T0)
    [added] = await notices(sessions)
    # The product consumed it meanwhile: completed jobs are kept, so the sweep still finds it.
    consumed = await read_with_node(redis_url)
    queue = open_queue(redis_url, QueueNames.BILLING_EVENTS)
    try:
        swept = await sweep_entitlement_notices(
            api.app.state.engine, queue, now=added.created_at + timedelta(minutes=2)
        )
        state = await queue.getJobState(added.job_id)
    finally:
        await queue.close()

    assert [job["id"] for job in consumed] == [added.job_id]
    assert swept == 0
    assert (state, await queued_jobs(redis_url)) == ("completed", [])
    [marked] = await notices(sessions)
    assert added.enqueued_at is None
    assert marked.enqueued_at is not None
