"""What the v1 object endpoints (meters, customers, products, prices, checkout, ...) share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from . import expansion
from .auth import require_secret_key
from .calls import serve_call
from .errors import WireAnswer
from .faults import FaultTarget
from .forms import Form, parse_form
from .state import StandinState
from .webhook_events import caused_by
from .wire import ok, query_form, request_id_of, standin_of


class StripeObject(Protocol):
    def to_stripe(self) -> dict[str, Any]: ...


def path_id(request: Request) -> str:
    value = request.path_params["object_id"]
    assert isinstance(value, str)
    return value


def call_params(request: Request, body: bytes) -> Form:
    """A call's parameters: the SDKs send a DELETE's in the query string, as a GET's (stripe
    16.1 `_api_requestor`: "get" and "delete" encode params into the URL), a POST's in the
    form-encoded body."""
    if request.method == "DELETE":
        return parse_form("&".join(part for part in (request.url.query, body.decode()) if part))
    return parse_form(body.decode())


def catalog_write(
    action: Callable[[StandinState, Request, Form], StripeObject | dict[str, Any]],
    *,
    fault_target: FaultTarget | None = None,
    after: Callable[[StandinState], None] | None = None,
    answers: str | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that needs the secret key, honours Idempotency-Key, and takes injected
    faults only when the plan targets `fault_target`. `after` runs once the work is done (e.g.
    to send the webhook events it made in the background). `answers` is the type of object it
    answers: `expand[]` is checked before the work and applied to the answer (expansion.py);
    without it `expand` is left as the endpoint treats it."""

    async def endpoint(request: Request) -> Response:
        state = standin_of(request)

        async def work(body: bytes, idempotency_key: str | None) -> WireAnswer:
            form = call_params(request, body)
            if answers is not None:
                expansion.check(answers, form)
            latency = state.config.write_latency_seconds
            if latency:
                # Holds the idempotency key "in progress", as a slow Stripe would.
                await asyncio.sleep(latency)
            with caused_by(request_id_of(request), idempotency_key):
                result = action(state, request, form)
            rendered = result if isinstance(result, dict) else result.to_stripe()
            answer = ok(expansion.expand(state, rendered, form) if answers else rendered)
            if after is not None:
                after(state)
            return answer

        return await serve_call(
            request,
            state,
            via="v1",
            authenticate=lambda: require_secret_key(state, request.headers),
            work=work,
            fault_target=fault_target,
        )

    return endpoint


def object_read(
    action: Callable[[StandinState, Request], dict[str, Any]],
    *,
    fault_target: FaultTarget | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """A GET that needs the secret key and takes injected faults where the plan targets
    `fault_target` (a receiver re-reading an object must survive a failed read)."""

    async def endpoint(request: Request) -> Response:
        state = standin_of(request)

        async def work(body: bytes, idempotency_key: str | None) -> WireAnswer:
            return ok(expansion.expand(state, action(state, request), query_form(request)))

        return await serve_call(
            request,
            state,
            via="v1",
            authenticate=lambda: require_secret_key(state, request.headers),
            work=work,
            fault_target=fault_target,
        )

    return endpoint
