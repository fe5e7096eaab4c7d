"""Bad input to a /v1 POST is refused with a 4xx naming the field or the limit, before the
endpoint runs: nothing is written, the Idempotency-Key is not taken, and Stripe is not called
(its address here is a port nothing listens on: a call would answer 502 instead)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from sensor_billing.api.route import MAX_BODY_BYTES
from sensor_billing.db import SessionFactory
from sensor_billing.settings import Settings
from tests.support.api import (
    add_organization,
    api_settings,
    checkout_body,
    checkout_path,
    portal_path,
)
from tests.support.net import free_port
from tests.support.state import count

JSON = {"Content-Type": "application/json", "Idempotency-Key": "retry-safe-1"}


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return api_settings(database_url, redis_url, f"http://127.0.0.1:{free_port()}")


async def assert_nothing_happened(sessions: SessionFactory) -> None:
    assert await count(sessions, "idempotency_keys") == 0
    assert await count(sessions, "organizations", "stripe_customer_id IS NOT NULL") == 0


@pytest.fixture
async def organization_id(sessions: SessionFactory) -> uuid.UUID:
    return await add_organization(sessions)


async def test_a_body_over_64_kib_is_refused_naming_the_limit(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    organization_id: uuid.UUID,
) -> None:
    body = json.dumps({**checkout_body(), "padding": "x" * MAX_BODY_BYTES}).encode()

    answer = await api.post(checkout_path(organization_id), content=body, headers=JSON)

    assert answer.status_code == 413
    assert answer.json() == {
        "error": {
            "code": "payload_too_large",
            "message": f"body is larger than {MAX_BODY_BYTES} bytes",
        }
    }
    await assert_nothing_happened(sessions)


async def test_a_body_that_is_not_json_is_refused_with_400(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    organization_id: uuid.UUID,
) -> None:
    answer = await api.post(
        checkout_path(organization_id), content=b'{"success_url": ', headers=JSON
    )

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["message"].startswith("the body is not JSON")
    await assert_nothing_happened(sessions)


async def test_a_body_not_declared_as_json_is_refused_with_415(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    organization_id: uuid.UUID,
) -> None:
    answer = await api.post(
        checkout_path(organization_id),
        content=json.dumps(checkout_body()).encode(),
        headers={**JSON, "Content-Type": "text/plain"},
    )

    assert answer.status_code == 415
    assert answer.json()["error"]["code"] == "unsupported_media_type"
    await assert_nothing_happened(sessions)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"success_url": "ftp://files.example.com/done"}, "body parameter success_url"),
        ({"success_url": "javascript:alert(1)"}, "body parameter success_url"),
        ({"cancel_url": "app.example.com/billing"}, "body parameter cancel_url"),
        ({"cancel_url": "https://app.example.com/a b"}, "body parameter cancel_url"),
        ({"cancel_url": None}, "body parameter cancel_url"),
        ({"quantity": 3}, "body parameter quantity"),
    ],
)
async def test_a_bad_field_is_refused_with_422_naming_it(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    organization_id: uuid.UUID,
    change: dict[str, object],
    named: str,
) -> None:
    body = {**checkout_body(), **change}

    answer = await api.post(checkout_path(organization_id), json=body, headers=JSON)

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert named in error["message"], error["message"]
    await assert_nothing_happened(sessions)


async def test_a_missing_field_is_named(
    api: httpx.AsyncClient, sessions: SessionFactory, organization_id: uuid.UUID
) -> None:
    answer = await api.post(
        checkout_path(organization_id), json={"success_url": "https://a.example"}, headers=JSON
    )

    assert answer.status_code == 422
    assert answer.json()["error"]["message"] == "body parameter cancel_url: Field required"


@pytest.mark.parametrize("path", [checkout_path("org-42"), portal_path("42")])
async def test_a_malformed_organization_id_is_refused_naming_the_path_parameter(
    api: httpx.AsyncClient, sessions: SessionFactory, path: str
) -> None:
    answer = await api.post(path, json={**checkout_body(), "return_url": "https://a.example"})

    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith("path parameter organization_id:")
    await assert_nothing_happened(sessions)


@pytest.mark.parametrize("key", ["", "k" * 256])
async def test_an_idempotency_key_outside_1_to_255_characters_is_refused(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    organization_id: uuid.UUID,
    key: str,
) -> None:
    answer = await api.post(
        checkout_path(organization_id), json=checkout_body(), headers={"Idempotency-Key": key}
    )

    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith("header parameter Idempotency-Key:")
    await assert_nothing_happened(sessions)


async def test_an_unknown_organization_is_404_and_that_answer_is_not_kept_for_the_key(
    api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    missing = uuid.uuid4()

    answer = await api.post(checkout_path(missing), json=checkout_body(), headers=JSON)
    again = await api.post(checkout_path(missing), json=checkout_body(), headers=JSON)

    assert answer.status_code == again.status_code == 404
    assert answer.json()["error"] == {
        "code": "organization_not_found",
        "message": f"no organization {missing}",
    }
    assert "idempotent-replayed" not in again.headers


async def test_a_body_nested_too_deeply_for_the_parser_is_refused_with_400(
    api: httpx.AsyncClient,
    sessions: SessionFactory,
    organization_id: uuid.UUID,
) -> None:
    # Within the size limit, but deeper than Python's parser recurses.
    depth = MAX_BODY_BYTES // 2 - 1
    body = b"[" * depth + b"]" * depth

    answer = await api.post(checkout_path(organization_id), content=body, headers=JSON)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_json"
    assert "nested" in error["message"]
    await assert_nothing_happened(sessions)
