"""The control API for billing: what customers and time do at Stripe, made to happen now.

POST /_standin/webhook_endpoints   {"url", "secret": "whsec_...", "enabled_events": ["*"]}:
                        register an endpoint whose secret the caller already holds
POST /_standin/checkout_sessions/{id}/complete   {"deliver": true}: pay an open session
POST /_standin/subscriptions/{id}/payment_failed     {"deliver": true}: a (renewal) payment fails
POST /_standin/subscriptions/{id}/payment_succeeded  {"deliver": true}: a (renewal) payment goes
                        through
POST /_standin/subscriptions/{id}/unpaid    {"deliver": true}: retries ran out, marked unpaid
POST /_standin/subscriptions/{id}/cancel    {"deliver": true, "reason": null}: it ends now (or at
                        its period end with cancel_at_period_end); see subscription_lifecycle.py
POST /_standin/webhook_deliveries  {"event_ids": [...]} (optional): wait for background sends,
                        then send those events again in that order, or by default every event
                        some endpoint has not answered 2xx; answers the attempts
POST /_standin/webhook_deliveries/settle   wait until background sends have finished; answers
                        every attempt so far

A route that makes events sends them before answering (`"deliver": false` keeps them for
`/webhook_deliveries`), and answers the ids of the events it made, in order, with the
delivery attempts. Loopback callers only, as the rest of the control API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import checkout, subscription_lifecycle, webhook_endpoints, webhook_events
from .billing_records import Subscription
from .errors import StripeRefusalError
from .routes_common import path_id
from .routes_control import forbidden, invalid_control_request, is_loopback
from .state import StandinState
from .subscriptions import subscription_snapshot
from .wire import standin_of


class Delivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deliver: bool = True


class Ending(Delivery):
    reason: Literal["payment_failed", "cancellation_requested"] | None = None


class EndpointRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    secret: str = Field(pattern=webhook_endpoints.SECRET_PATTERN)
    enabled_events: list[str] = Field(default_factory=lambda: ["*"], min_length=1)


class Redelivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_ids: list[str] | None = None


def control_error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"message": message}}, status)


Handler = Callable[[Request, StandinState, bytes], Awaitable[Response]]


def control(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Loopback only; a malformed body is a 400 naming the problem; a refusal of the work
    (a Stripe-shaped error) is answered in Stripe's shape."""

    async def endpoint(request: Request) -> Response:
        if not is_loopback(request):
            return forbidden()
        try:
            return await handler(request, standin_of(request), await request.body())
        except ValidationError as exc:
            return invalid_control_request(exc)

    return endpoint


async def send_made_events(state: StandinState, deliver: bool) -> dict[str, Any]:
    """The events made since the last take: sent now, or kept for `/webhook_deliveries`."""
    event_ids = webhook_events.take_outbox(state)
    attempts = await webhook_events.deliver(state, event_ids) if deliver else []
    return {"events": event_ids, "deliveries": [attempt.to_control() for attempt in attempts]}


async def register_endpoint(request: Request, state: StandinState, body: bytes) -> Response:
    asked = EndpointRegistration.model_validate_json(body)
    try:
        endpoint = webhook_endpoints.register_endpoint(
            state, url=asked.url, secret=asked.secret, enabled_events=asked.enabled_events
        )
    except StripeRefusalError as refusal:
        return control_error(400, refusal.message)
    return JSONResponse(endpoint.to_stripe())


async def complete_session(request: Request, state: StandinState, body: bytes) -> Response:
    asked = Delivery.model_validate_json(body or b"{}")
    try:
        session = checkout.complete_session(state, path_id(request))
    except StripeRefusalError as refusal:
        return control_error(refusal.status, refusal.message)
    except checkout.SessionNotOpenError as not_open:
        return control_error(409, str(not_open))
    with state.lock:
        subscription = state.subscriptions[session.subscription or ""]
        answer = {
            "checkout_session": session.to_stripe(),
            "subscription": subscription_snapshot(state, subscription),
        }
    return JSONResponse({**answer, **await send_made_events(state, asked.deliver)})


Transition = Callable[[StandinState, str], Subscription]


def transition(change: Transition) -> Handler:
    async def handler(request: Request, state: StandinState, body: bytes) -> Response:
        asked = Delivery.model_validate_json(body or b"{}")
        return await _run_transition(state, lambda: change(state, path_id(request)), asked)

    return handler


async def cancel(request: Request, state: StandinState, body: bytes) -> Response:
    asked = Ending.model_validate_json(body or b"{}")
    return await _run_transition(
        state, lambda: subscription_lifecycle.end(state, path_id(request), asked.reason), asked
    )


async def _run_transition(
    state: StandinState, change: Callable[[], Subscription], asked: Delivery
) -> Response:
    try:
        subscription = change()
    except StripeRefusalError as refusal:
        return control_error(refusal.status, refusal.message)
    except subscription_lifecycle.TransitionRefusedError as refused:
        return control_error(409, str(refused))
    with state.lock:
        invoice = state.invoices.get(subscription.latest_invoice or "")
        answer = {
            "subscription": subscription_snapshot(state, subscription),
            "invoice": None if invoice is None else invoice.to_stripe(state.prices),
        }
    return JSONResponse({**answer, **await send_made_events(state, asked.deliver)})


async def redeliver(request: Request, state: StandinState, body: bytes) -> Response:
    asked = Redelivery.model_validate_json(body or b"{}")
    await webhook_events.settle(state)
    with state.lock:
        unknown = [e for e in asked.event_ids or [] if e not in state.webhook_events]
    if unknown:
        return control_error(404, f"No such events: {unknown}")
    if asked.event_ids is None:
        attempts = await webhook_events.deliver(
            state, webhook_events.not_yet_delivered(state), only_undelivered=True
        )
    else:
        attempts = await webhook_events.deliver(state, asked.event_ids)
    return JSONResponse({"deliveries": [attempt.to_control() for attempt in attempts]})


async def settle(request: Request, state: StandinState, body: bytes) -> Response:
    await webhook_events.settle(state)
    with state.lock:
        attempts = list(state.webhook_deliveries)
    return JSONResponse({"deliveries": [attempt.to_control() for attempt in attempts]})


routes = [
    Route("/_standin/webhook_endpoints", control(register_endpoint), methods=["POST"]),
    Route(
        "/_standin/checkout_sessions/{object_id}/complete",
        control(complete_session),
        methods=["POST"],
    ),
    *(
        Route(
            f"/_standin/subscriptions/{{object_id}}/{name}",
            control(transition(change)),
            methods=["POST"],
        )
        for name, change in (
            ("payment_failed", subscription_lifecycle.payment_failed),
            ("payment_succeeded", subscription_lifecycle.payment_succeeded),
            ("unpaid", subscription_lifecycle.mark_unpaid),
        )
    ),
    Route("/_standin/subscriptions/{object_id}/cancel", control(cancel), methods=["POST"]),
    Route("/_standin/webhook_deliveries", control(redeliver), methods=["POST"]),
    Route("/_standin/webhook_deliveries/settle", control(settle), methods=["POST"]),
]
