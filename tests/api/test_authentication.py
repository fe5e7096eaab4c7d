"""Every /v1 operation needs `Authorization: Bearer sbk_...`: a missing, wrong or revoked key
is answered 401 before anything is read or written, and logged with the client's address,
never with what was presented."""

from __future__ import annotations

import logging

import httpx
import pytest

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.devtools.stripe_standin import RunningStandin
from sensor_billing.service_keys import (
    ServiceKeyVerifier,
    create_service_key,
    revoke_service_key,
)
from sensor_billing.service_keys.verifier import VERIFIED_KEY_CACHE_SECONDS
from sensor_billing.settings import Settings
from tests.support.api import add_organization, api_client, checkout_body, checkout_path
from tests.support.app import running_app
from tests.support.state import count

UNKNOWN_ORGANIZATION = "00000000-0000-4000-8000-000000000000"


def refused(answer: httpx.Response) -> bool:
    return (
        answer.status_code == 401
        and answer.json()["error"]["code"] == "unauthorized"
        and answer.headers["www-authenticate"] == 'Bearer realm="sensor-billing"'
    )


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Basic c2JrX3Rlc3Q6",
        "Bearer sk_test_standin",
        "Bearer sbk_" + "A" * 43,
    ],
)
async def test_a_request_without_a_valid_service_key_is_refused_and_changes_nothing(
    settings: Settings,
    sessions: SessionFactory,
    standin: RunningStandin,
    service_key: str,
    authorization: str | None,
) -> None:
    organization_id = await add_organization(sessions)
    async with api_client(settings, service_key) as client:
        headers = {"Idempotency-Key": "checkout-1"}
        if authorization is None:
            del client.headers["Authorization"]
        else:
            headers["Authorization"] = authorization
        answer = await client.post(
            checkout_path(organization_id), json=checkout_body(), headers=headers
        )

    assert refused(answer), answer.text
    assert await count(sessions, "idempotency_keys") == 0
    assert await count(sessions, "organizations", "stripe_customer_id IS NOT NULL") == 0
    assert standin.state.customers == {}


async def test_a_refusal_is_logged_with_the_client_address_and_never_the_key(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sbk_" + "W" * 43
    with caplog.at_level(logging.WARNING, logger="sensor_billing.api"):
        answer = await api.post(
            checkout_path(UNKNOWN_ORGANIZATION),
            json=checkout_body(),
            headers={"Authorization": f"Bearer {wrong}"},
        )

    assert refused(answer)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "sensor_billing.api"]
    assert "unknown key" in line
    assert "client 127.0.0.1" in line
    assert checkout_path(UNKNOWN_ORGANIZATION) in line
    assert "W" * 8 not in line
    assert "W" * 8 not in answer.text


async def test_a_revoked_key_is_refused_with_the_same_answer_as_an_unknown_one(
    settings: Settings, sessions: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with unit_of_work(sessions) as session:
        old = await create_service_key(session, "backend-2026-11")
    async with unit_of_work(sessions) as session:
        await revoke_service_key(session, old.id)

    with caplog.at_level(logging.WARNING, logger="sensor_billing.api"):
        async with api_client(settings, old.secret) as client:
            revoked = await client.post(checkout_path(UNKNOWN_ORGANIZATION), json=checkout_body())
            client.headers["Authorization"] = "Bearer sbk_" + "U" * 43
            unknown = await client.post(checkout_path(UNKNOWN_ORGANIZATION), json=checkout_body())

    assert refused(revoked)
    assert revoked.json() == unknown.json()
    logged = [r.getMessage() for r in caplog.records if r.name == "sensor_billing.api"]
    assert f"revoked key {old.id} (backend-2026-11)" in logged[0]


async def test_two_keys_work_at_once_so_a_key_is_rolled_without_downtime(
    settings: Settings, sessions: SessionFactory
) -> None:
    async with unit_of_work(sessions) as session:
        old = await create_service_key(session, "backend-2026-11")
        new = await create_service_key(session, "backend-2026-12")

    async with api_client(settings, old.secret) as client:
        with_old = await client.post(checkout_path(UNKNOWN_ORGANIZATION), json=checkout_body())
        client.headers["Authorization"] = f"Bearer {new.secret}"
        with_new = await client.post(checkout_path(UNKNOWN_ORGANIZATION), json=checkout_body())

    # Past the key check: the endpoint itself answers (no such organization).
    assert with_old.status_code == with_new.status_code == 404
    assert with_new.json()["error"]["code"] == "organization_not_found"


async def test_a_key_revoked_while_the_api_runs_is_refused_once_its_cache_time_has_passed(
    settings: Settings, sessions: SessionFactory
) -> None:
    async with unit_of_work(sessions) as session:
        old = await create_service_key(session, "backend-2026-11")
    moment = [1000.0]

    async with running_app(settings) as (app, client):
        app.state.service_keys = ServiceKeyVerifier(app.state.sessions, clock=lambda: moment[0])
        client.headers["Authorization"] = f"Bearer {old.secret}"
        before = await client.post(checkout_path(UNKNOWN_ORGANIZATION), json=checkout_body())
        async with unit_of_work(sessions) as session:
            await revoke_service_key(session, old.id)
        moment[0] += VERIFIED_KEY_CACHE_SECONDS - 0.1
        cached = await client.post(checkout_path(UNKNOWN_ORGANIZATION), json=checkout_body())
        moment[0] += 0.1
        after = await client.post(checkout_path(UNKNOWN_ORGANIZATION), json=checkout_body())
        await app.state.service_keys.aclose()

    assert before.status_code == cached.status_code == 404
    assert refused(after)


async def test_a_strangers_body_is_not_read_however_large(api: httpx.AsyncClient) -> None:
    answer = await api.post(
        checkout_path(UNKNOWN_ORGANIZATION),
        content=b"x" * (1024 * 1024),
        headers={"Authorization": "Bearer nope", "Content-Type": "application/json"},
    )

    assert refused(answer)
