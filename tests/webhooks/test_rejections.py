"""Bad deliveries: a clear 4xx naming the problem, and nothing written."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import httpx
import pytest

from sensor_billing.db import SessionFactory
from sensor_billing.settings import load_settings
from sensor_billing.webhooks.signature import sign
from tests.support.app import running_app
from tests.support.state import snapshot
from tests.support.stripe_events import deliver, encode, make_event
from tests.webhooks.conftest import RETIRED_SECRET, ROLLED_IN_SECRET, SECRET

EVENT = make_event("invoice.paid", {"id": "in_bad", "customer": "cus_bad"}, created=1_764_000_000)
# Signed, but deeper than Python's JSON parser recurses.
DEEP = b"[" * 20_000 + b"]" * 20_000
BODY = encode(EVENT)


Headers = Mapping[str, str] | Mapping[bytes, bytes]


def post(
    headers: Headers | Callable[[], Headers], body: bytes = BODY
) -> Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]:
    """A delivery of `body`; headers given as a function are made when it is sent, so a
    signature's timestamp is the time of sending, not of collecting the tests (a whole run
    takes longer than Stripe's 5-minute tolerance)."""

    def send(client: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        made = headers() if callable(headers) else headers
        return client.post("/webhooks/stripe", content=body, headers=made)

    return send


def signed(body: bytes, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if at is None else at
    return {"Content-Type": "application/json", "Stripe-Signature": sign(secret, stamp, body)}


NOT_AN_EVENT = (
    b'{"id": "evt_1", "object": "charge", "type": "x", "created": 1, "data": {"object": {}}}'
)
CASES = {
    "missing signature": (post({"Content-Type": "application/json"}), 400, "signature_missing"),
    "malformed signature": (
        post({"Content-Type": "application/json", "Stripe-Signature": "sha256=abc"}),
        400,
        "signature_malformed",
    ),
    # Headers arrive as bytes read as Latin-1: "\xb2" is "²", which str.isdigit() accepts.
    "signature timestamp of a superscript digit": (
        post({b"Content-Type": b"application/json", b"Stripe-Signature": b"t=\xb2,v1=00"}),
        400,
        "signature_malformed",
    ),
    # hmac.compare_digest refuses a str with a non-ASCII character (TypeError): "\xe9" is "é".
    "signature v1 of a non-ASCII byte": (
        post({b"Content-Type": b"application/json", b"Stripe-Signature": b"t=1,v1=\xe9"}),
        400,
        "signature_malformed",
    ),
    "signature timestamp of 5000 digits": (
        post(
            {"Content-Type": "application/json", "Stripe-Signature": "t=" + "9" * 5000 + ",v1=00"}
        ),
        400,
        "signature_malformed",
    ),
    "wrong signature": (
        post(lambda: signed(BODY, "whsec_someone_else")),
        400,
        "signature_mismatch",
    ),
    "retired secret": (post(lambda: signed(BODY, RETIRED_SECRET)), 400, "signature_mismatch"),
    "stale timestamp": (
        post(lambda: signed(BODY, at=int(time.time()) - 301)),
        400,
        "timestamp_outside_tolerance",
    ),
    "future timestamp": (
        post(lambda: signed(BODY, at=int(time.time()) + 600)),
        400,
        "timestamp_outside_tolerance",
    ),
    "body not json": (post(lambda: signed(b"not json"), b"not json"), 400, "invalid_event"),
    "body nested deeper than the parser recurses": (
        post(lambda: signed(DEEP), DEEP),
        400,
        "invalid_event",
    ),
    "body not a stripe event": (
        post(lambda: signed(NOT_AN_EVENT), NOT_AN_EVENT),
        400,
        "invalid_event",
    ),
    "event without data.object": (
        post(
            lambda: signed(b'{"id":"evt_2","object":"event","type":"x","created":1}'),
            b'{"id":"evt_2","object":"event","type":"x","created":1}',
        ),
        400,
        "invalid_event",
    ),
    "event id too long": (
        post(
            lambda: signed(encode(EVENT | {"id": "evt_" + "x" * 300})),
            encode(EVENT | {"id": "evt_" + "x" * 300}),
        ),
        400,
        "invalid_event",
    ),
    "created past year 9999": (
        post(
            lambda: signed(encode(EVENT | {"created": 10**12})), encode(EVENT | {"created": 10**12})
        ),
        400,
        "invalid_event",
    ),
    "NUL character in a field": (
        post(
            lambda: signed(encode(EVENT | {"id": "evt_\u0000"})),
            encode(EVENT | {"id": "evt_\u0000"}),
        ),
        400,
        "invalid_event",
    ),
    "wrong content type": (
        post(lambda: {**signed(BODY), "Content-Type": "application/x-www-form-urlencoded"}),
        415,
        "unsupported_media_type",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
async def test_bad_delivery_is_refused_with_a_reason_and_writes_nothing(
    case: str, client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    send, status, code = CASES[case]
    before = await snapshot(sessions)
    response = await send(client)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert await snapshot(sessions) == before


async def test_body_over_one_mebibyte_is_refused_with_413(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    body = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = await client.post("/webhooks/stripe", content=body, headers=signed(body))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert (await snapshot(sessions))["stripe_events"] == []


async def test_streamed_body_without_length_is_cut_off_at_the_limit(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 65_536  # 2.5 MiB in all, no Content-Length

    response = await client.post(
        "/webhooks/stripe",
        content=chunks(),
        headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"},
    )
    assert response.status_code == 413
    assert (await snapshot(sessions))["stripe_events"] == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_are_refused_with_405(method: str, client: httpx.AsyncClient) -> None:
    response = await client.request(method, "/webhooks/stripe")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_during_a_secret_roll_either_secret_is_accepted(
    client: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    old = make_event("invoice.paid", {"id": "in_a", "customer": "cus_a"}, created=1_764_000_000)
    new = make_event("invoice.paid", {"id": "in_b", "customer": "cus_a"}, created=1_764_000_000)
    both = make_event("invoice.paid", {"id": "in_c", "customer": "cus_a"}, created=1_764_000_000)
    assert (await deliver(client, old, secret=SECRET)).status_code == 200
    assert (await deliver(client, new, secret=ROLLED_IN_SECRET)).status_code == 200
    # What Stripe sends during a roll: one v1 per active secret.
    assert (await deliver(client, both, secret=[SECRET, ROLLED_IN_SECRET])).status_code == 200
    assert len((await snapshot(sessions))["stripe_events"]) == 3


async def test_without_a_configured_secret_every_delivery_is_refused(
    database_url: str, redis_url: str, sessions: SessionFactory
) -> None:
    settings = load_settings(
        database_url=database_url, redis_url=redis_url, stripe_webhook_secret=""
    )
    async with running_app(settings) as (_, client):
        response = await deliver(client, EVENT, secret=SECRET)
    assert response.status_code == 503
    # A code like every other refusal's, not the Python class name.
    assert response.json()["error"]["code"] == "webhook_not_configured"
    assert "STRIPE_WEBHOOK_SECRET" in response.json()["error"]["message"]
    assert (await snapshot(sessions))["stripe_events"] == []


async def test_errors_and_logs_never_show_the_secret_or_the_payload(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="sensor_billing")
    response = await client.post(
        "/webhooks/stripe", content=BODY, headers=signed(BODY, "whsec_wrong")
    )
    accepted = await deliver(client, EVENT, secret=SECRET)
    assert accepted.status_code == 200
    text = response.text + accepted.text + caplog.text
    for secret in (SECRET, ROLLED_IN_SECRET, "whsec_wrong"):
        assert secret not in text
    assert "cus_bad" not in caplog.text  # payload fields stay out of logs
    assert f"event_id={EVENT['id']} type=invoice.paid outcome=processed" in caplog.text
