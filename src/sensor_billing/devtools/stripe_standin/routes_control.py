"""The control API under `/_standin/`: no auth, loopback callers only.

GET  /_standin/state    accepted events, error reports, counters, meters, customers
GET  /_standin/faults   the fault plan;  POST sets it (JSON FaultPlan)
GET  /_standin/config   latency, limits, customer mode;  POST sets it (JSON StandinConfig)
POST /_standin/reset    forget everything but the API keys
POST /_standin/clock    {"advance_seconds": N}: move the stand-in's clock forward
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import StandinConfig
from .faults import FaultPlan
from .wire import standin_of


class ClockAdvance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advance_seconds: float = Field(ge=0.0)


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _forbidden() -> Response:
    return JSONResponse({"error": {"message": "The control API answers loopback only."}}, 403)


def _invalid(exc: ValidationError) -> Response:
    errors: Any = exc.errors(include_url=False, include_context=False)
    return JSONResponse({"error": {"message": "Invalid control request.", "details": errors}}, 400)


async def read_state(request: Request) -> Response:
    if not _is_loopback(request):
        return _forbidden()
    return JSONResponse(standin_of(request).snapshot())


async def faults(request: Request) -> Response:
    if not _is_loopback(request):
        return _forbidden()
    state = standin_of(request)
    if request.method == "POST":
        try:
            state.set_faults(FaultPlan.model_validate_json(await request.body()))
        except ValidationError as exc:
            return _invalid(exc)
    return JSONResponse(state.faults.plan.model_dump())


async def config(request: Request) -> Response:
    if not _is_loopback(request):
        return _forbidden()
    state = standin_of(request)
    if request.method == "POST":
        try:
            state.configure(StandinConfig.model_validate_json(await request.body()))
        except ValidationError as exc:
            return _invalid(exc)
    return JSONResponse(state.config.model_dump())


async def reset(request: Request) -> Response:
    if not _is_loopback(request):
        return _forbidden()
    standin_of(request).reset()
    return JSONResponse({"reset": True})


async def clock(request: Request) -> Response:
    if not _is_loopback(request):
        return _forbidden()
    state = standin_of(request)
    try:
        advance = ClockAdvance.model_validate_json(await request.body())
    except ValidationError as exc:
        return _invalid(exc)
    state.clock.advance(advance.advance_seconds)
    return JSONResponse({"now": state.clock.now()})


routes = [
    Route("/_standin/state", read_state, methods=["GET"]),
    Route("/_standin/faults", faults, methods=["GET", "POST"]),
    Route("/_standin/config", config, methods=["GET", "POST"]),
    Route("/_standin/reset", reset, methods=["POST"]),
    Route("/_standin/clock", clock, methods=["POST"]),
]
