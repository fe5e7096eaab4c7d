"""HTTP plumbing: Stripe-style JSON answers, a `Request-Id` on every answer, error rendering."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import InvalidRequestError, StripeRefusalError, WireAnswer
from .forms import Form, parse_form
from .state import StandinState


class RequestIdMiddleware:
    """Stripe sends `Request-Id` on every answer; clients log it to trace a call."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + secrets.token_hex(7)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("Request-Id", request_id)
            await send(message)

        await self.app(scope, receive, send_with_request_id)


def request_id_of(request: Request) -> str | None:
    value: Any = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def to_response(answer: WireAnswer) -> Response:
    return JSONResponse(dict(answer.body), status_code=answer.status, headers=dict(answer.headers))


def ok(body: dict[str, Any]) -> WireAnswer:
    return WireAnswer(200, body)


def query_form(request: Request) -> Form:
    return parse_form(request.url.query)


async def render_refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StripeRefusalError)
    return to_response(exc.to_answer())


async def render_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        refusal = InvalidRequestError(
            f"Unrecognized request URL ({request.method}: {request.url.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
            status=404,
        )
        return to_response(refusal.to_answer())
    return JSONResponse({"error": {"message": exc.detail}}, status_code=exc.status_code)


def standin_of(request: Request) -> StandinState:
    state: Any = request.app.state.standin
    assert isinstance(state, StandinState)
    return state
