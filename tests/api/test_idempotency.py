"""Idempotency-Key on /v1 POSTs, through HTTP: the same key and request answers the stored
first answer, another request with the key is 409, a key whose request is still running is
409 and does not run twice, and the key is kept 24 h."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text

from sensor_billing.api import idempotency_repository
from sensor_billing.db import SessionFactory
from tests.support.api import checkout_body, checkout_path


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
