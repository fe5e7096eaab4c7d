"""Who may see /ops, and what a refused or bad request gets: over HTTP, no browser."""

from __future__ import annotations

import logging

import httpx
import pytest

from sensor_billing.db import SessionFactory
from sensor_billing.ops.auth import SESSION_COOKIE
from sensor_billing.settings import Settings, load_settings
from tests.ops.conftest import (
    BEARER,
    HTML,
    OPS_TOKEN,
    STRIPE_KEY,
    WEBHOOK_SECRET,
    fail_job,
    job_state,
)
from tests.ops.seed import RAW_PAYLOAD_MARKER, seed_billing
from tests.support.app import running_app

PAGES = ("/ops", "/ops/organizations", "/ops/failures", "/ops/webhooks")


async def sign_in(client: httpx.AsyncClient) -> str:
    """Sign in through the form; the CSRF token of the new session."""
    answer = await client.post("/ops/login", data={"token": OPS_TOKEN, "next": "/ops/failures"})
    assert answer.status_code == 303
    page = await client.get("/ops/failures", headers=HTML)
    marker = 'name="csrf_token" value="'
    return page.text.split(marker, 1)[1].split('"', 1)[0]


async def test_without_ops_token_the_pages_do_not_exist(
    database_url: str, redis_url: str, sessions: SessionFactory
) -> None:
    settings = load_settings(database_url=database_url, redis_url=redis_url)
    async with running_app(settings) as (_, client):
        for path in (*PAGES, "/ops/login"):
            assert (await client.get(path, headers=BEARER)).status_code == 404


@pytest.mark.parametrize("path", PAGES)
async def test_a_browser_without_a_session_gets_401_and_the_sign_in_page(
    client: httpx.AsyncClient, sessions: SessionFactory, path: str
) -> None:
    await seed_billing(sessions)
    answer = await client.get(path, headers=HTML)
    assert answer.status_code == 401
    assert 'action="/ops/login"' in answer.text
    assert "Acme" not in answer.text


async def test_a_wrong_bearer_token_gets_401_and_nothing_else(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    await seed_billing(sessions)
    answer = await client.get("/ops", headers={"Authorization": "Bearer not-the-token"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json() == {
        "error": {"code": "unauthorized", "message": "the bearer token is not OPS_TOKEN"}
    }


async def test_the_right_bearer_token_opens_every_page(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    seeded = await seed_billing(sessions)
    for path in (*PAGES, f"/ops/organizations/{seeded.organization_id}"):
        answer = await client.get(path, headers=BEARER)
        assert answer.status_code == 200, path
        assert answer.headers["cache-control"] == "no-store"
        assert "script-src" not in answer.headers["content-security-policy"]


async def test_signing_in_sets_a_signed_http_only_cookie_for_ops_only(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post("/ops/login", data={"token": OPS_TOKEN, "next": "/ops/webhooks"})

    assert answer.status_code == 303
    assert answer.headers["location"] == "/ops/webhooks"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ops" in cookie
    assert OPS_TOKEN not in cookie
    assert (await client.get("/ops", headers=HTML)).status_code == 200


async def test_a_wrong_token_in_the_form_is_refused_with_401(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sensor_billing.ops"):
        answer = await client.post("/ops/login", data={"token": "guess-guess-guess-guess"})
        wrong_bearer = await client.get("/ops", headers={"Authorization": "Bearer guess"})
    assert answer.status_code == 401
    assert "That is not the token." in answer.text
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert wrong_bearer.status_code == 401
    # Sign-in is not rate-limited: each refusal is logged, so guessing shows (never the guess).
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 2, refusals
    assert not any("guess" in message for message in refusals)


async def test_sign_in_only_redirects_within_ops(client: httpx.AsyncClient) -> None:
    answer = await client.post("/ops/login", data={"token": OPS_TOKEN, "next": "//evil.test/x"})
    assert answer.headers["location"] == "/ops"


async def test_a_tampered_session_cookie_is_refused(client: httpx.AsyncClient) -> None:
    await client.post("/ops/login", data={"token": OPS_TOKEN})
    value = client.cookies[SESSION_COOKIE]
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert (await client.get("/ops", headers=HTML)).status_code == 401


async def test_a_session_from_another_ops_token_is_refused(
    ops_settings: Settings, sessions: SessionFactory
) -> None:
    async with running_app(ops_settings) as (_, first):
        await first.post("/ops/login", data={"token": OPS_TOKEN})
        cookie = first.cookies[SESSION_COOKIE]
    rotated = load_settings(
        database_url=ops_settings.database_url,
        redis_url=ops_settings.redis_url,
        ops_token="a-new-token-after-rotation",
    )
    async with running_app(rotated) as (_, second):
        second.cookies.set(SESSION_COOKIE, cookie)
        assert (await second.get("/ops", headers=HTML)).status_code == 401


async def test_signing_out_needs_the_csrf_token_and_ends_the_session(
    client: httpx.AsyncClient,
) -> None:
    csrf = await sign_in(client)
    assert (await client.post("/ops/logout", data={"csrf_token": "x"})).status_code == 403
    answer = await client.post("/ops/logout", data={"csrf_token": csrf})
    assert answer.status_code == 303
    assert (await client.get("/ops", headers=HTML)).status_code == 401


@pytest.mark.parametrize("path", ["/ops/logout", "/ops/failures/retry"])
async def test_a_form_with_a_non_ascii_csrf_token_is_refused_with_403(
    client: httpx.AsyncClient, path: str
) -> None:
    await sign_in(client)
    answer = await client.post(path, data={"csrf_token": "\u00e9", "job_id": "1"}, headers=HTML)
    assert answer.status_code == 403, answer.text


async def test_a_retry_without_the_csrf_token_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, redis_url: str
) -> None:
    await fail_job(redis_url, "sb.csrf")
    await sign_in(client)

    answer = await client.post("/ops/failures/retry", data={"job_id": "sb.csrf"}, headers=HTML)

    assert answer.status_code == 403
    assert await job_state(redis_url, "sb.csrf") == "failed"


async def test_a_retry_is_idempotent(client: httpx.AsyncClient, redis_url: str) -> None:
    await fail_job(redis_url, "sb.twice")
    csrf = await sign_in(client)
    form = {"job_id": "sb.twice", "csrf_token": csrf}

    first = await client.post("/ops/failures/retry", data=form)
    second = await client.post("/ops/failures/retry", data=form)

    assert first.status_code == second.status_code == 303
    assert "outcome=retried" in first.headers["location"]
    assert "outcome=not_failed" in second.headers["location"]
    assert await job_state(redis_url, "sb.twice") == "waiting"
    page = await client.get(second.headers["location"], headers=HTML)
    assert "Job sb.twice (meter-reporting) is waiting, not failed: nothing to retry." in page.text


async def test_a_retry_of_a_job_that_is_gone_shows_a_message(
    client: httpx.AsyncClient, redis_url: str
) -> None:
    csrf = await sign_in(client)

    answer = await client.post(
        "/ops/failures/retry", data={"job_id": "sb.gone", "csrf_token": csrf}
    )
    page = await client.get(answer.headers["location"], headers=HTML)

    assert page.status_code == 200
    assert "No job sb.gone in any queue: it was removed, or never existed." in page.text


async def test_a_script_retries_with_the_bearer_token_alone(
    client: httpx.AsyncClient, redis_url: str
) -> None:
    await fail_job(redis_url, "sb.script")

    answer = await client.post("/ops/failures/retry", data={"job_id": "sb.script"}, headers=BEARER)
    again = await client.post("/ops/failures/retry", data={"job_id": "sb.script"}, headers=BEARER)

    assert answer.status_code == 200
    assert answer.json()["outcome"] == "retried"
    assert again.status_code == 409
    assert again.json() == {
        "jobId": "sb.script",
        "outcome": "not_failed",
        "queue": "meter-reporting",
        "state": "waiting",
    }


@pytest.mark.parametrize(
    "organization", ["5b0e7a3c-1d2f-4e6a-9b8c-7d6e5f4a3b2c", "not-a-uuid", "cus_nobody"]
)
async def test_an_unknown_organization_is_a_404_page(
    client: httpx.AsyncClient, organization: str
) -> None:
    await sign_in(client)
    path = (
        f"/ops/organizations?q={organization}"
        if organization.startswith("cus_")
        else f"/ops/organizations/{organization}"
    )
    answer = await client.get(path, headers=HTML)
    assert answer.status_code == 404
    assert "Not found" in answer.text


async def test_an_organization_is_found_by_its_stripe_customer(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    seeded = await seed_billing(sessions)
    answer = await client.get("/ops/organizations?q=cus_ops_1", headers=BEARER)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ops/organizations/{seeded.organization_id}"


async def test_no_page_shows_a_secret_or_a_raw_payload(
    client: httpx.AsyncClient, sessions: SessionFactory, redis_url: str
) -> None:
    seeded = await seed_billing(sessions)
    await fail_job(redis_url, "sb.secret-check")
    await sign_in(client)
    paths = (
        *PAGES,
        f"/ops/organizations/{seeded.organization_id}",
        f"/ops/organizations/{seeded.other_organization_id}",
        "/ops/login",
    )
    for path in paths:
        answer = await client.get(path, headers=HTML)
        assert answer.status_code == 200, path
        for secret in (OPS_TOKEN, STRIPE_KEY, WEBHOOK_SECRET, RAW_PAYLOAD_MARKER):
            assert secret not in answer.text, (path, secret)
