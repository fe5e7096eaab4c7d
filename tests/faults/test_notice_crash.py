"""A `sensor-billing serve` process SIGKILLed between a webhook's commit and the add of its
`billing:entitlement-changed` job: the committed notice is the only trace, and the worker's
sweep adds the job, once (docs/billing.md "Hearing of changes")."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.billing.entitlement_notices import (
    PUBLISH_TIMEOUT_SECONDS,
    SWEEP_AFTER,
    sweep_entitlement_notices,
)
from sensor_billing.db import SessionFactory
from sensor_billing.db.schema import EntitlementNotice
from sensor_billing.jobs import QueueNames
from sensor_billing.jobs.connection import open_queue
from sensor_billing.observability.scrape import MULTIPROC_DIR_VARIABLE
from tests.billing.test_entitlement_notices import notices
from tests.cli.test_serve_command import wait_until_healthy
from tests.faults.servers import TcpProxy, proxy_in_front_of, start_api_process
from tests.support.billing_events import queued_jobs
from tests.support.billing_state import CUSTOMER, new_organization, subscription
from tests.support.net import free_port
from tests.support.stripe_events import deliver, make_event

pytestmark = pytest.mark.faults

SECRET = "whsec_notice_crash_secret"


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    async with proxy_in_front_of(redis_url, 6379) as server:
        yield server


def through(proxy: TcpProxy, redis_url: str) -> str:
    return make_url(redis_url).set(port=proxy.port).render_as_string(hide_password=False)


def api_env(database_url: str, redis_url: str) -> dict[str, str]:
    return {
        **{name: value for name, value in os.environ.items() if name != MULTIPROC_DIR_VARIABLE},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
    }


async def started_api(env: dict[str, str], log: IO[bytes]) -> tuple[Any, httpx.AsyncClient]:
    port = free_port()
    api = start_api_process(env, log, port)
    await asyncio.to_thread(wait_until_healthy, port, api, 30)
    return api, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)


async def committed_notice(
    sessions: SessionFactory, job_id: str, within: float
) -> EntitlementNotice:
    """The notice `job_id` once another transaction committed it, polled every few ms: the
    kill must land well inside the API's wait for its add (PUBLISH_TIMEOUT_SECONDS)."""
    deadline = time.monotonic() + within
    while not (found := [n for n in await notices(sessions) if n.job_id == job_id]):
        assert time.monotonic() < deadline, "the API never committed the notice"
        await asyncio.sleep(0.005)
    return found[0]


def subscription_created(sub_id: str, customer: str, at: int) -> dict[str, Any]:
    body = subscription(sub_id, "active", start=at, customer=customer)
    return make_event("customer.subscription.created", body, created=at)


async def test_the_api_killed_between_a_webhooks_commit_and_its_jobs_add_loses_no_notice(
    sessions: SessionFactory,
    engine: AsyncEngine,
    database_url: str,
    redis_url: str,
    redis_proxy: TcpProxy,
    tmp_path: Path,
    observe: Any,
) -> None:
    org = await new_organization(sessions, CUSTOMER)
    other = await new_organization(sessions, "cus_served_before", name="Served Before")
    now = int(time.time())
    event = subscription_created("sub_crash", CUSTOMER, now)
    job_id = f"entitlement-{event['id']}-{org}"
    # A process that has served before: its queue's connection is open (bullmq connects at
    # the first add), so the add below is the command that goes unanswered.
    earlier = subscription_created("sub_earlier", "cus_served_before", now)
    earlier_job_id = f"entitlement-{earlier['id']}-{other}"
    with (tmp_path / "api.log").open("w+b") as log:
        api, client = await started_api(api_env(database_url, through(redis_proxy, redis_url)), log)
        try:
            assert (await deliver(client, earlier, secret=SECRET)).status_code == 200
            # From here the API's Redis takes commands and never answers: its add hangs.
            redis_proxy.swallow()
            sent_at = time.monotonic()
            delivery = asyncio.create_task(deliver(client, event, secret=SECRET))
            notice = await committed_notice(sessions, job_id, within=10)
            api.send_signal(signal.SIGKILL)
            killed_after = time.monotonic() - sent_at
            exit_code = await asyncio.to_thread(api.wait, 10)
            with pytest.raises(httpx.TransportError):  # Stripe gets no answer: it redelivers
                await delivery
        finally:
            if api.poll() is None:
                api.kill()
                api.wait(10)
            await client.aclose()
        # The API's connections end with the proxy; what it swallowed never reaches Redis.
        await redis_proxy.close()
        log.seek(0)
        crashed_log = log.read().decode(errors="replace")

    assert exit_code == -signal.SIGKILL
    # The add was under way when the process died: sent, and not yet given up on.
    assert killed_after < PUBLISH_TIMEOUT_SECONDS
    assert job_id.encode() in redis_proxy.swallowed, "the kill landed before the add was sent"
    assert "not added" not in crashed_log, crashed_log[-2000:]
    assert (notice.job_id, notice.organization_id, notice.event_id) == (job_id, org, event["id"])
    assert notice.enqueued_at is None
    assert [job.id for job in await queued_jobs(redis_url)] == [earlier_job_id]

    queue = open_queue(redis_url, QueueNames.BILLING_EVENTS)
    try:
        assert await queue.getJob(job_id) is None  # in no state at all
        past_the_wait = notice.created_at + SWEEP_AFTER + timedelta(seconds=1)
        swept = await sweep_entitlement_notices(engine, queue, now=past_the_wait)
        after_sweep = await queued_jobs(redis_url)
        swept_again = await sweep_entitlement_notices(engine, queue, now=past_the_wait)
        after_second_sweep = await queued_jobs(redis_url)
    finally:
        await queue.close()

    assert (swept, swept_again) == (1, 0)
    assert [(job.id, job.name) for job in after_sweep] == [
        (earlier_job_id, "billing:entitlement-changed"),
        (job_id, "billing:entitlement-changed"),
    ]
    data = after_sweep[1].data
    assert (data["organizationId"], data["entitled"], data["reason"], data["eventId"]) == (
        str(org),
        True,
        "active",
        event["id"],
    )
    assert [job.id for job in after_second_sweep] == [earlier_job_id, job_id]
    assert all(n.enqueued_at is not None for n in await notices(sessions))

    # Stripe redelivers the event it got no answer for, to the restarted API.
    with (tmp_path / "restarted.log").open("w+b") as log:
        api, client = await started_api(api_env(database_url, redis_url), log)
        try:
            redelivered = await deliver(client, event, secret=SECRET)
        finally:
            await client.aclose()
            api.send_signal(signal.SIGTERM)
            await asyncio.to_thread(api.wait, 30)
    assert (redelivered.status_code, redelivered.json()["outcome"]) == (200, "duplicate")
    in_the_end = [job.id for job in await queued_jobs(redis_url)]
    assert in_the_end == [earlier_job_id, job_id]

    observe(
        fault="API SIGKILLed between a webhook's commit and its job's add",
        kills=1,
        jobs_enqueued=swept,
        jobs_enqueued_by_the_second_sweep=swept_again,
        redeliveries=1,
        duplicates=1,
        jobs_in_queue_for_the_event=in_the_end.count(job_id),
        seconds_from_delivery_to_kill=round(killed_after, 3),
    )
