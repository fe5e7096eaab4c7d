"""`POST /webhooks/stripe`: read the raw body (bounded), verify, then process in one transaction.

Snapshot events (`"object": "event"`) and thin events (`"object": "v2.core.event"`, from a v2
event destination pointed at the same URL) share the route and the signature check; the body's
`object` decides how it is read.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send
from stripe import StripeClient

from sensor_billing.db import SessionFactory
from sensor_billing.errors import (
    EventFetchError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    WebhookNotConfiguredError,
    WebhookRejectedError,
)
from sensor_billing.http_errors import error_response
from sensor_billing.observability import record_webhook_delivery
from sensor_billing.observability.metrics import WebhookOutcome
from sensor_billing.settings import Settings
from sensor_billing.stripe_api.events import fetch_subscription, fetch_v2_event
from sensor_billing.webhooks.envelope import StripeEventEnvelope, load_body, read_event
from sensor_billing.webhooks.recent import RecentEvents
from sensor_billing.webhooks.recorder import EventRecorder
from sensor_billing.webhooks.service import (
    ALREADY_PROCESSED,
    EventFetcher,
    Outcome,
    Processed,
    SubscriptionFetcher,
    deliver_event,
    deliver_thin_event,
)
from sensor_billing.webhooks.signature import verify_signature
from sensor_billing.webhooks.thin_events import (
    ThinEventNotification,
    is_thin_event,
    parse_thin_event,
)

logger = logging.getLogger("sensor_billing.webhooks")

# Stripe events are a few KB; 1 MiB is far above any real one and bounds memory per request.
MAX_BODY_BYTES = 1024 * 1024

WEBHOOK_PATH = "/webhooks/stripe"


def install(app: FastAPI) -> None:
    """Route POST /webhooks/stripe to the endpoint (other methods answer 405).

    The app serves a POST on this path with `serve_webhook` before its middleware (see
    `app.SensorBillingApp`); the route gives the path its 405 for other methods and serves
    the endpoint to whatever calls the router itself.
    """
    app.add_route(WEBHOOK_PATH, receive_stripe_webhook, methods=["POST"], include_in_schema=False)


def is_webhook_delivery(scope: Scope) -> bool:
    return bool(
        scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == WEBHOOK_PATH
    )


async def serve_webhook(scope: Scope, receive: Receive, send: Send) -> None:
    """The endpoint as a bare ASGI app, its errors answered as the app's handlers answer them."""
    request = Request(scope, receive)
    try:
        response = await receive_stripe_webhook(request)
    except Exception as error:
        response = error_response(request, error)
    await response(scope, receive, send)


# A delivery of an event this process saw committed: answered without touching the database.
ANSWERED_BEFORE = Processed(Outcome.DUPLICATE, ALREADY_PROCESSED)


def event_fetcher(client: StripeClient | None) -> EventFetcher:
    """Fetches full v2 events with the app's Stripe client (None without STRIPE_API_KEY)."""

    async def fetch(event_id: str, context: str | None) -> dict[str, Any]:
        if client is None:
            raise EventFetchError(
                "STRIPE_API_KEY is not set: the full event of a thin event cannot be fetched"
            )
        return await fetch_v2_event(client, event_id, context)

    return fetch


def subscription_fetcher(client: StripeClient | None) -> SubscriptionFetcher:
    """Fetches a subscription whose events of one second disagree (None without a key)."""

    async def fetch(subscription_id: str) -> dict[str, Any]:
        if client is None:
            raise EventFetchError(
                f"STRIPE_API_KEY is not set: subscription {subscription_id}, whose events of"
                " one second disagree, cannot be fetched"
            )
        return await fetch_subscription(client, subscription_id)

    return fetch


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refused as soon as it passes `limit` (never read whole into memory)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def require_json(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaTypeError(
            f"Content-Type must be application/json, got {media_type or 'none'}"
        )


@functools.lru_cache(maxsize=1024)
def answer_body(outcome: str, effect: str, reason: str) -> bytes:
    """The answer's JSON; most deliveries share a handful of answers, rendered once each."""
    document = {"received": True, "outcome": outcome, "effect": effect, "reason": reason}
    return json.dumps(document, separators=(",", ":")).encode()


async def receive_stripe_webhook(request: Request) -> Response:
    # Served before the app's middleware (see `serve_webhook`), reading the app's state
    # itself: FastAPI's request handling (dependencies, validation, serialisation), which this
    # route needs none of, cost about a third of each delivery's CPU.
    started = time.perf_counter()
    state = request.app.state
    settings: Settings = state.settings
    recorder: EventRecorder = state.event_recorder
    sessions: SessionFactory = state.sessions
    event_id = event_type = "-"
    outcome = "rejected"
    try:
        if not settings.webhook_secrets:
            raise WebhookNotConfiguredError("STRIPE_WEBHOOK_SECRET is not set")
        require_json(request)
        body = await read_body(request)
        verify_signature(
            body, request.headers.get("stripe-signature"), settings.webhook_secrets, now=time.time()
        )
        document = load_body(body)
        recent: RecentEvents = state.recent_events
        envelope: ThinEventNotification | StripeEventEnvelope = (
            parse_thin_event(document) if is_thin_event(document) else read_event(document)
        )
        event_id, event_type = envelope.id, envelope.type
        outcome = "failed"
        if event_id in recent:
            processed = ANSWERED_BEFORE
        elif isinstance(envelope, ThinEventNotification):
            fetch_event = event_fetcher(getattr(state, "stripe", None))
            processed = await deliver_thin_event(recorder, sessions, envelope, fetch_event)
        else:
            processed = await deliver_event(
                recorder,
                state.event_lookup,
                state.engine,
                envelope,
                subscription_fetcher(getattr(state, "stripe", None)),
                state.entitlement_notifier,
                state.handled_deliveries,
            )
        recent.add(event_id)  # committed now, by this request or an earlier one
        outcome = processed.outcome.value
        return Response(
            answer_body(outcome, processed.result.effect.value, processed.result.reason),
            media_type="application/json",
        )
    except WebhookRejectedError as error:
        outcome = f"rejected:{error.code}"
        raise
    finally:
        seconds = time.perf_counter() - started
        record_webhook_delivery(outcome_kind(outcome), event_type, seconds)
        logger.info(
            "stripe webhook event_id=%s type=%s outcome=%s ms=%.1f",
            event_id,
            event_type,
            outcome,
            seconds * 1000,
            extra={
                "event_id": event_id,
                "event_type": event_type,
                "outcome": outcome,
                "duration_ms": round(seconds * 1000, 1),
            },
        )


# The metric's outcomes; the log's `rejected:<code>` (and an unconfigured endpoint's 503) count
# as `rejected`, so the label keeps four values.
METRIC_OUTCOMES: dict[str, WebhookOutcome] = {
    "processed": "processed",
    "duplicate": "duplicate",
    "failed": "failed",
}


def outcome_kind(outcome: str) -> WebhookOutcome:
    return METRIC_OUTCOMES.get(outcome, "rejected")
