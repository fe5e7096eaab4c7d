"""Counting the /v1 requests the product's backend makes, by operation and status.

An ASGI wrapper around the app rather than a middleware class: the operation is known only
after routing (Starlette leaves the matched route in the request's scope), and the status
when the answer starts, so both are read as the request passes back out. Labels stay bounded:
the route's path template, never the path itself (it carries organization ids).
"""

from __future__ import annotations

import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sensor_billing.api.router import V1_PREFIX
from sensor_billing.observability.metrics import record_api_request

UNMATCHED_ROUTE: Final = "unmatched"
# An exception that escaped every handler: the server answers 500.
NO_ANSWER_STATUS: Final = 500


def is_v1_request(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    return scope["type"] == "http" and (path == V1_PREFIX or path.startswith(V1_PREFIX + "/"))


async def observe_v1_request(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    status = NO_ANSWER_STATUS
    answered_after = 0.0

    async def send_and_note(message: Message) -> None:
        nonlocal status, answered_after
        if message["type"] == "http.response.start":
            status = message["status"]
            answered_after = time.perf_counter() - started
        await send(message)

    try:
        await app(scope, receive, send_and_note)
    finally:
        route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
        seconds = answered_after or time.perf_counter() - started
        record_api_request(scope["method"], route, status, seconds)
