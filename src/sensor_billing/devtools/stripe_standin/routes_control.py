"""The control API under `/_standin/`: no auth, loopback callers only.

GET  /_standin/state    accepted events, error reports, counters, meters, customers
GET  /_standin/faults   the fault plan;  POST sets it (JSON FaultPlan)
GET  /_standin/config   latency, limits, customer mode;  POST sets it (JSON StandinConfig)
POST /_standin/reset    forget everything but the API keys
POST /_standin/clock    {"advance_seconds": N, "freeze": true|false}: move the stand-in's clock
                        forward; freeze it (several changes in one second) or let it go on
GET  /_standin/event_destination   where thin events go (url only);  POST sets it
                        ({"url": ..., "secret": "whsec_..."}), DELETE removes it
POST /_standin/deliver_events  {"event_ids": [...]} (optional): send those events again, or
                        by default every event without a 2xx delivery; answers the attempts

The faults plan may name `targets` (faults.FaultTarget). Billing's control routes (checkout
completion, webhook endpoints and deliveries) are in routes_control_billing.py.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import destinations
from .config import EventDestination, StandinConfig
from .faults import FaultPlan
from .wire import standin_of


class DeliverEvents(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_ids: list[str] | None = None


class ClockAdvance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advance_seconds: float = Field(0.0, ge=0.0)
    freeze: bool | None = None


def is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def forbidden() -> Response:
    return JSONResponse({"error": {"message": "The control API answers loopback only."}}, 403)


def invalid_control_request(exc: ValidationError) -> Response:
    errors: Any = exc.errors(include_url=False, include_context=False)
    return JSONResponse({"error": {"message": "Invalid control request.", "details": errors}}, 400)


async def read_state(request: Request) -> Response:
    if not is_loopback(request):
        return forbidden()
    return JSONResponse(standin_of(request).snapshot())


async def faults(request: Request) -> Response:
    if not is_loopback(request):
        return forbidden()
    state = standin_of(request)
    if request.method == "POST":
        try:
            state.set_faults(FaultPlan.model_validate_json(await request.body()))
        except ValidationError as exc:
            return invalid_control_request(exc)
    return JSONResponse(state.faults.plan.model_dump(mode="json"))


async def config(request: Request) -> Response:
    if not is_loopback(request):
        return forbidden()
    state = standin_of(request)
    if request.method == "POST":
        try:
            state.configure(StandinConfig.model_validate_json(await request.body()))
        except ValidationError as exc:
            return invalid_control_request(exc)
    return JSONResponse(state.config.model_dump())


async def reset(request: Request) -> Response:
    if not is_loopback(request):
        return forbidden()
    standin_of(request).reset()
    return JSONResponse({"reset": True})


async def clock(request: Request) -> Response:
    if not is_loopback(request):
        return forbidden()
    state = standin_of(request)
    try:
        advance = ClockAdvance.model_validate_json(await request.body())
    except ValidationError as exc:
        return invalid_control_request(exc)
    if advance.freeze is True:
        state.clock.freeze()
    state.clock.advance(advance.advance_seconds)
    if advance.freeze is False:
        state.clock.unfreeze()
    return JSONResponse({"now": state.clock.now(), "frozen": state.clock.frozen})


async def event_destination(request: Request) -> Response:
    if not is_loopback(request):
        return forbidden()
    state = standin_of(request)
    if request.method == "POST":
        try:
            destination = EventDestination.model_validate_json(await request.body())
        except ValidationError as exc:
            return invalid_control_request(exc)
        with state.lock:
            state.destination = destination
    elif request.method == "DELETE":
        with state.lock:
            state.destination = None
    with state.lock:
        current = state.destination
    return JSONResponse(None if current is None else {"url": current.url})


async def deliver_events(request: Request) -> Response:
    if not is_loopback(request):
        return forbidden()
    state = standin_of(request)
    try:
        asked = DeliverEvents.model_validate_json(await request.body() or b"{}")
    except ValidationError as exc:
        return invalid_control_request(exc)
    with state.lock:
        if state.destination is None:
            return JSONResponse({"error": {"message": "No event destination is set."}}, 400)
        unknown = [e for e in asked.event_ids or [] if e not in state.v2_events]
    if unknown:
        return JSONResponse({"error": {"message": f"No such events: {unknown}"}}, 404)
    event_ids = (
        asked.event_ids if asked.event_ids is not None else destinations.not_yet_delivered(state)
    )
    attempts = await destinations.deliver(state, event_ids)
    return JSONResponse({"deliveries": [attempt.to_control() for attempt in attempts]})


routes = [
    Route("/_standin/state", read_state, methods=["GET"]),
    Route("/_standin/faults", faults, methods=["GET", "POST"]),
    Route("/_standin/config", config, methods=["GET", "POST"]),
    Route("/_standin/reset", reset, methods=["POST"]),
    Route("/_standin/clock", clock, methods=["POST"]),
    Route("/_standin/event_destination", event_destination, methods=["GET", "POST", "DELETE"]),
    Route("/_standin/deliver_events", deliver_events, methods=["POST"]),
]
