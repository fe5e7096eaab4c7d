"""The route class of every /v1 operation: the caller's key first, then a bounded JSON body.

FastAPI reads and parses a body before it solves any dependency, so neither the key check nor
a size limit could run first as a dependency. This class runs both before FastAPI's handler:
a stranger's body is never read, a body over `MAX_BODY_BYTES` is refused while it streams in
(413), and one that is not JSON is refused with 400 (FastAPI would answer 422) before the
model validates it (422 naming the field). It also notes the digest of the request's
parameters, which the Idempotency-Key store compares.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Scope

from sensor_billing.api.auth import authenticate
from sensor_billing.errors import InvalidJsonBodyError
from sensor_billing.webhooks.endpoint import read_body, require_json

MAX_BODY_BYTES: Final = 64 * 1024
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})


class BufferedRequest(Request):
    """A request whose body was already read (bounded) and is handed on from memory."""

    def __init__(self, scope: Scope, body: bytes) -> None:
        super().__init__(scope)
        self._buffered = body

    async def body(self) -> bytes:
        return self._buffered


def parameters_digest(method: str, path: str, body: bytes) -> bytes:
    """What "the same request" means for an Idempotency-Key: method, path and the body's
    parameters, whatever their order or spacing. Raises `InvalidJsonBodyError`."""
    canonical = ""
    if body:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise InvalidJsonBodyError(f"the body is not JSON ({error})") from None
        except RecursionError:
            # A small body can nest deeper than the parser recurses ("[[[[...").
            raise InvalidJsonBodyError(
                "the body is not JSON this service reads: nested too deeply"
            ) from None
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).digest()


class V1Route(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def authenticated_and_bounded(request: Request) -> Response:
            await authenticate(request)
            if request.method not in BODY_METHODS:
                return await handle(request)
            body = await read_body(request, MAX_BODY_BYTES)
            if body:
                require_json(request)
            request.state.parameters_sha256 = parameters_digest(
                request.method, request.url.path, body
            )
            return await handle(BufferedRequest(request.scope, body))

        return authenticated_and_bounded
