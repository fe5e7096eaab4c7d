"""How an injected fault reaches the client: 429, 500, a late answer, or a cut connection."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .errors import ApiFailureError, InvalidRequestError, WireAnswer
from .faults import FaultDecision, FaultKind
from .limits import rate_limited
from .wire import to_response

_POLL_SECONDS = 0.05
_SERVER_ERROR_MESSAGE = (
    "Sorry, something went wrong. We've already been notified of the problem, but if you "
    "need any help, you can reach us at support.stripe.com/contact."
)

# Not a message Stripe sends: it says plainly that the refusal was injected.
_INVALID_REQUEST_MESSAGE = "The stand-in refused this request (an injected invalid_request fault)."


class InjectedConnectionDropError(Exception):
    """Raised after a partial answer: uvicorn then closes the socket mid-body."""


class HideInjectedDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for every connection the stand-in cuts on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, InjectedConnectionDropError)


class DroppedConnectionResponse(Response):
    """Announces a 4 KiB body, sends a few bytes, then fails: httpx raises RemoteProtocolError."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"4096"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b'{"object": ', "more_body": True})
        raise InjectedConnectionDropError


def server_error() -> WireAnswer:
    return ApiFailureError(_SERVER_ERROR_MESSAGE).to_answer()


async def deliver_fault(
    request: Request, decision: FaultDecision, executed: WireAnswer | None
) -> Response:
    """`executed` is the real answer when the request ran before the fault (lost ack)."""
    if decision.kind is FaultKind.RATE_LIMITED:
        return to_response(rate_limited("global-rate").to_answer())
    if decision.kind is FaultKind.INVALID_REQUEST:
        return to_response(InvalidRequestError(_INVALID_REQUEST_MESSAGE).to_answer())
    if decision.kind is FaultKind.SERVER_ERROR:
        return to_response(server_error())
    if decision.kind is FaultKind.DROPPED_CONNECTION:
        return DroppedConnectionResponse()
    await _sleep_while_connected(request, decision.timeout_seconds)
    return to_response(executed if executed is not None else server_error())


async def _sleep_while_connected(request: Request, seconds: float) -> None:
    # Stop as soon as the client gave up, so a test's short client timeout keeps it fast.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(_POLL_SECONDS, deadline - loop.time()))
