"""Issue 14 point 6, "entitlement changes reach the product", through HTTP: the app served by
uvicorn, the Stripe stand-in in its own server delivering signed webhooks, real PostgreSQL and
Redis, the worker's periodic checks, and the product's side read by a Node BullMQ Worker.

`invoice.payment_failed` moves the organization to past-due: entitled until the grace period
ends (the app's and the worker's clocks moved past it), then not; a
`billing:entitlement-changed` job appears once per change, and a replay of every webhook adds
none."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sensor_billing.app import create_app
from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.jobs.worker import MeteringWorker
from sensor_billing.service_keys import issue_service_key
from sensor_billing.settings import Settings
from sensor_billing.stripe_api.client import create_http_client
from tests.billing.test_end_to_end import stripe_set_up, subscribe  # noqa: F401 - a fixture
from tests.support.app import serving_app
from tests.support.billing_events import ENTITLEMENT_CHANGED_KEYS, read_with_node
from tests.support.billing_state import new_organization
from tests.webhooks.conftest import SECRET


@dataclass
class Served:
    app: FastAPI
    client: httpx.AsyncClient
    control: httpx.AsyncClient

    async def entitlement(self, org: uuid.UUID) -> dict[str, Any]:
        answer = await self.client.get(f"/v1/organizations/{org}/billing")
        assert answer.status_code == 200, answer.text
        entitlement: dict[str, Any] = answer.json()["entitlement"]
        return entitlement


@pytest.fixture
async def served(
    standin_settings: Settings,
    standin: RunningStandin,
    sessions: SessionFactory,
    stripe_set_up: None,  # noqa: F811 - the fixture imported above
) -> AsyncIterator[Served]:
    """The served app (its clock reachable), called with a service key; the stand-in delivers
    every event to it, signed."""
    key = await issue_service_key(sessions, "saas-backend")
    app = create_app(standin_settings)
    with serving_app(standin_settings, app) as url:
        async with (
            httpx.AsyncClient(base_url=standin.url, timeout=30) as control,
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as client,
        ):
            registered = await control.post(
                "/_standin/webhook_endpoints",
                json={"url": f"{url}/webhooks/stripe", "secret": SECRET, "enabled_events": ["*"]},
            )
            assert registered.status_code == 200, registered.text
            yield Served(app, client, control)


def delivered_ok(answer: httpx.Response) -> list[str]:
    """The ids of the events a control route delivered, each answered 200 by the app."""
    assert answer.status_code == 200, answer.text
    deliveries = answer.json()["deliveries"]
    assert deliveries
    assert all(delivery["status"] == 200 for delivery in deliveries), deliveries
    return [delivery["event_id"] for delivery in deliveries]


async def worker_checks(settings: Settings, now: datetime) -> int:
    """The worker as deployed, its clock at `now`: its start-up close runs the entitlement
    checks; how many jobs a second run adds (none: the first found all there was)."""
    worker = MeteringWorker(settings, clock=lambda: now, http_client=create_http_client(timeout=5))
    try:
        await worker.start()
        return await worker.run_entitlement_checks()
    finally:
        await worker.stop()


async def test_a_failed_payment_is_entitled_until_the_grace_ends_and_each_change_is_one_job(
    served: Served, standin: RunningStandin, standin_settings: Settings, sessions: SessionFactory
) -> None:
    org = await new_organization(sessions, None)
    await subscribe(served.client, standin, org)
    assert await served.entitlement(org) == {"entitled": True, "reason": "active", "until": None}
    billing = (await served.client.get(f"/v1/organizations/{org}/billing")).json()
    subscription_id = billing["subscription"]["id"]

    failed = await served.control.post(
        f"/_standin/subscriptions/{subscription_id}/payment_failed", json={"deliver": True}
    )
    failure_events = delivered_ok(failed)
    in_grace = await served.entitlement(org)
    assert in_grace["entitled"] is True
    assert in_grace["reason"] == "past_due_grace"
    grace_end = datetime.fromisoformat(in_grace["until"])

    # Stripe delivers every event again (a retry after a lost answer): nothing new.
    every_event = list(standin.state.webhook_events)
    replayed = await served.control.post(
        "/_standin/webhook_deliveries", json={"event_ids": every_event}
    )
    delivered_ok(replayed)

    before_grace_end = await read_with_node(standin_settings.redis_url)

    served.app.state.clock = lambda: grace_end - timedelta(seconds=1)
    still_in_grace = await served.entitlement(org)
    served.app.state.clock = lambda: grace_end
    after_grace = await served.entitlement(org)
    checked_early = await worker_checks(standin_settings, grace_end - timedelta(seconds=1))
    checked_after = await worker_checks(standin_settings, grace_end)
    at_grace_end = await read_with_node(standin_settings.redis_url)

    assert still_in_grace == in_grace
    assert after_grace == {"entitled": False, "reason": "past_due_grace_ended", "until": None}
    jobs = before_grace_end + at_grace_end
    assert [len(before_grace_end), len(at_grace_end)] == [2, 1]
    assert [job["name"] for job in jobs] == ["billing:entitlement-changed"] * 3
    assert len({job["id"] for job in jobs}) == 3
    assert all(set(job["data"]) == ENTITLEMENT_CHANGED_KEYS for job in jobs)
    assert all(job["data"]["organizationId"] == str(org) for job in jobs)
    active, past_due, ended = (job["data"] for job in jobs)
    assert (active["entitled"], active["reason"], active["until"]) == (True, "active", None)
    assert (past_due["entitled"], past_due["reason"]) == (True, "past_due_grace")
    assert datetime.fromisoformat(past_due["until"]) == grace_end
    assert past_due["eventId"] in failure_events
    assert (ended["entitled"], ended["reason"], ended["until"]) == (
        False,
        "past_due_grace_ended",
        None,
    )
    assert ended["eventId"] is None
    assert datetime.fromisoformat(ended["decidedAt"]) == grace_end
    # The start-up run of each worker did the work; a second run right after finds nothing.
    assert (checked_early, checked_after) == (0, 0)
