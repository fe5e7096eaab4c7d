"""Thin events for meter errors: created with each error report, sent to the event destination.

Stripe reports meter events that fail asynchronous validation as thin events
(`v1.billing.meter.error_report_triggered`, `v1.billing.meter.no_meter_found`): a small signed
notification is POSTed to the destination and the receiver fetches the full event from
`GET /v2/core/events/{id}` (docs: event-destinations, api/v2/core/events). Signing is the
webhook scheme: `Stripe-Signature: t=<unix seconds>,v1=<HMAC-SHA256(secret, "<t>.<body>")>`.
`t` is the wall-clock time of sending, not the stand-in's clock: the receiver checks it against
its own clock (300 s tolerance), which a test that moved the stand-in's clock did not move.

Stripe sends events created after a destination exists and retries failures; the stand-in sends
each event once, in the background, when a destination was set at its creation, and
`POST /_standin/deliver_events` sends again what did not get a 2xx (or named events, to model a
duplicate delivery) and waits for the answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterable

import httpx

from .records import ErrorReport, EventDelivery, V2Event, new_id
from .state import StandinState

# Stripe gives up on an endpoint that does not answer quickly; it publishes no figure.
DELIVERY_TIMEOUT_SECONDS = 10.0
_background: set[asyncio.Task[None]] = set()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def create_v2_event(state: StandinState, report: ErrorReport) -> V2Event:
    """The thin event for a new error report; queued for delivery if a destination is set.
    Call with `state.lock` held."""
    event = V2Event(id=new_id("evt_test_", 40), report=report)
    state.v2_events[event.id] = event
    if state.destination is not None:
        state.undelivered.append(event.id)
    return event


def dispatch_undelivered(state: StandinState) -> None:
    """Send the queued events in the background: the meter event call answers first, as
    Stripe's validation (and so its report) comes after the 2xx."""
    with state.lock:
        event_ids, state.undelivered = state.undelivered, []
    if event_ids:
        task = asyncio.get_running_loop().create_task(_deliver_quietly(state, event_ids))
        _background.add(task)
        task.add_done_callback(_background.discard)


async def _deliver_quietly(state: StandinState, event_ids: list[str]) -> None:
    await deliver(state, event_ids)


async def deliver(state: StandinState, event_ids: Iterable[str]) -> list[EventDelivery]:
    """POST each event's notification to the destination; record and return the attempts."""
    with state.lock:
        destination = state.destination
        events = [state.v2_events[event_id] for event_id in event_ids]
    if destination is None:
        return []
    attempts = []
    async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS) as client:
        for event in events:
            attempts.append(await _post(state, client, destination.url, destination.secret, event))
    return attempts


async def post_signed(
    client: httpx.AsyncClient, url: str, secret: str, document: dict[str, object]
) -> tuple[int | None, str | None]:
    """POST `document` as Stripe delivers an event; the answer's status, or the error's name."""
    # Stripe sends pretty-printed JSON; each attempt is signed anew with the current time.
    body = json.dumps(document, indent=2).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature_header(secret, int(time.time()), body),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as error:
        return None, type(error).__name__
    return response.status_code, None


async def _post(
    state: StandinState, client: httpx.AsyncClient, url: str, secret: str, event: V2Event
) -> EventDelivery:
    status, error = await post_signed(client, url, secret, event.to_notification())
    delivery = EventDelivery(event.id, state.clock.now(), status, error)
    with state.lock:
        state.deliveries.append(delivery)
    return delivery


def not_yet_delivered(state: StandinState) -> list[str]:
    """Events without a 2xx delivery, oldest first (what Stripe would still retry)."""
    with state.lock:
        delivered = {d.event_id for d in state.deliveries if d.succeeded}
        return [event_id for event_id in state.v2_events if event_id not in delivered]
