"""Idempotency-Key on /v1 POSTs, through HTTP: the same key and request answers the stored
first answer, another request with the key is 409, a key whose request is still running is
409 and does not run twice, and the key is kept 24 h."""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text

from sensor_billing.api import idempotency_repository
from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.stripe_api.setup import SetupResult
from tests.faults.servers import TcpProxy
from tests.support.api import (
    add_organization,
    api_client,
    api_settings,
    checkout_body,
    checkout_path,
)
from tests.support.state import count


async def test_a_key_whose_request_is_still_running_is_refused_with_409_and_runs_nothing(
    api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    missing = uuid.uuid4()
    headers = {"Idempotency-Key": "checkout-attempt-1"}
    first = await api.post(checkout_path(missing), json=checkout_body(), headers=headers)
    assert first.status_code == 404

    # What a request running with the key holds: its row's lock, until its transaction ends.
    async with sessions() as running, running.begin():
        await running.execute(
            text("SELECT 1 FROM idempotency_keys WHERE key = :key FOR UPDATE"),
            {"key": "checkout-attempt-1"},
        )
        while_running = await api.post(
            checkout_path(missing), json=checkout_body(), headers=headers
        )
    after = await api.post(checkout_path(missing), json=checkout_body(), headers=headers)

    assert while_running.status_code == 409
    assert while_running.json()["error"]["code"] == "idempotency_key_in_use"
    assert after.status_code == 404


async def test_the_same_key_with_another_request_is_refused_with_409(
    api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    missing = uuid.uuid4()
    headers = {"Idempotency-Key": "checkout-attempt-1"}
    await api.post(checkout_path(missing), json=checkout_body(), headers=headers)

    other_body = await api.post(
        checkout_path(missing),
        json={**checkout_body(), "cancel_url": "https://app.example.com/other"},
        headers=headers,
    )
    other_path = await api.post(checkout_path(uuid.uuid4()), json=checkout_body(), headers=headers)

    for answer in (other_body, other_path):
        assert answer.status_code == 409
        error = answer.json()["error"]
        assert error["code"] == "idempotency_key_reused"
        assert f"POST {checkout_path(missing)}" in error["message"]


async def test_a_key_older_than_24_hours_is_free_again_and_old_keys_are_pruned(
    api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    first_org, second_org = uuid.uuid4(), uuid.uuid4()
    headers = {"Idempotency-Key": "checkout-attempt-1"}
    await api.post(checkout_path(first_org), json=checkout_body(), headers=headers)
    for number in range(3):
        await api.post(
            checkout_path(first_org),
            json=checkout_body(),
            headers={"Idempotency-Key": f"older-{number}"},
        )
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE idempotency_keys SET created_at = now() - interval '24 hours 1 second'")
        )

    reused = await api.post(checkout_path(second_org), json=checkout_body(), headers=headers)

    assert reused.status_code == 404  # it ran: no longer bound to the first request
    assert reused.json()["error"]["message"] == f"no organization {second_org}"
    async with sessions() as session:
        keys = (await session.execute(text("SELECT key, request_path FROM idempotency_keys"))).all()
    assert [tuple(row) for row in keys] == [("checkout-attempt-1", checkout_path(second_org))]


async def test_an_expired_key_not_pruned_yet_is_taken_over_by_the_next_request(
    api: httpx.AsyncClient, sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency_repository, "PRUNE_BATCH", 0)
    first_org, second_org = uuid.uuid4(), uuid.uuid4()
    headers = {"Idempotency-Key": "checkout-attempt-1"}
    await api.post(checkout_path(first_org), json=checkout_body(), headers=headers)
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        )

    reused = await api.post(checkout_path(second_org), json=checkout_body(), headers=headers)

    assert reused.status_code == 404
    async with sessions() as session:
        row = (
            await session.execute(
                text(
                    "SELECT request_path, created_at > now() - interval '1 minute'"
                    " FROM idempotency_keys"
                )
            )
        ).one()
    assert tuple(row) == (checkout_path(second_org), True)


async def test_the_same_key_and_request_answers_the_first_answer_and_stripe_is_called_once(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions)
    headers = {"Idempotency-Key": "checkout-attempt-1", "Content-Type": "application/json"}
    body = checkout_body()
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=4)

    first = await api.post(checkout_path(organization_id), json=body, headers=headers)
    second = await api.post(checkout_path(organization_id), content=reordered, headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert list(standin.state.checkout_sessions) == [first.json()["id"]]
    assert len(standin.state.customers) == 1


async def test_without_a_key_every_request_runs(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions)

    first = await api.post(checkout_path(organization_id), json=checkout_body())
    second = await api.post(checkout_path(organization_id), json=checkout_body())

    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert await count(sessions, "idempotency_keys") == 0


async def test_requests_sent_at_once_with_one_key_make_one_session(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
) -> None:
    organization_id = await add_organization(sessions)
    headers = {"Idempotency-Key": "double-click"}

    answers = await asyncio.gather(
        *(
            api.post(checkout_path(organization_id), json=checkout_body(), headers=headers)
            for _ in range(3)
        )
    )

    made = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert made, [a.text for a in answers]
    assert {a.json()["id"] for a in made} == set(standin.state.checkout_sessions)
    assert len(standin.state.checkout_sessions) == 1
    for answer in refused:
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "idempotency_key_in_use"


async def test_a_retry_after_a_crash_gets_back_the_session_stripe_made_the_first_time(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    organization_id = await add_organization(sessions)
    headers = {"Idempotency-Key": "checkout-attempt-1"}

    def crash(*args: object) -> None:
        raise RuntimeError("the process died before the answer was stored")

    with monkeypatch.context() as patch:
        patch.setattr(idempotency_repository, "store_answer", crash)
        crashed = await api.post(
            checkout_path(organization_id), json=checkout_body(), headers=headers
        )
    retried = await api.post(checkout_path(organization_id), json=checkout_body(), headers=headers)

    assert crashed.status_code == 500
    assert retried.status_code == 201, retried.text
    assert list(standin.state.checkout_sessions) == [retried.json()["id"]]
    assert standin.state.counters_snapshot().idempotent_replays >= 1
    assert "idempotent-replayed" not in retried.headers


async def test_stripe_not_answering_is_502_and_a_retry_with_the_same_key_runs_again(
    database_url: str,
    redis_url: str,
    sessions: SessionFactory,
    standin: RunningStandin,
    stripe_setup: SetupResult,
    service_key: str,
) -> None:
    target = urlsplit(standin.url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 80)
    await proxy.start()
    organization_id = await add_organization(sessions)
    headers = {"Idempotency-Key": "checkout-attempt-1"}
    try:
        async with api_client(
            api_settings(database_url, redis_url, f"http://127.0.0.1:{proxy.port}"), service_key
        ) as client:
            await proxy.cut()
            unanswered = await client.post(
                checkout_path(organization_id), json=checkout_body(), headers=headers
            )
            await proxy.restore()
            retried = await client.post(
                checkout_path(organization_id), json=checkout_body(), headers=headers
            )
    finally:
        await proxy.close()

    assert unanswered.status_code == 502
    error = unanswered.json()["error"]
    assert error["code"] == "stripe_unavailable"
    assert error["stripe"]["status"] is None
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers
    assert len(standin.state.checkout_sessions) == 1
