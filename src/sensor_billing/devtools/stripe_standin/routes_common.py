"""What the v1 catalog endpoints (meters, customers, products, prices) have in common."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from .auth import require_secret_key
from .calls import serve_call
from .errors import WireAnswer
from .forms import Form, parse_form
from .state import StandinState
from .wire import ok, standin_of


class StripeObject(Protocol):
    def to_stripe(self) -> dict[str, Any]: ...


def path_id(request: Request) -> str:
    value = request.path_params["object_id"]
    assert isinstance(value, str)
    return value


def catalog_write(
    action: Callable[[StandinState, Request, Form], StripeObject],
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that needs the secret key, honours Idempotency-Key, and is never subject to
    injected faults (those model the metering endpoints' infrastructure)."""

    async def endpoint(request: Request) -> Response:
        state = standin_of(request)

        async def work(body: bytes, idempotency_key: str | None) -> WireAnswer:
            return ok(action(state, request, parse_form(body.decode())).to_stripe())

        return await serve_call(
            request,
            state,
            via="v1",
            authenticate=lambda: require_secret_key(state, request.headers),
            work=work,
            faults_apply=False,
        )

    return endpoint
