"""Who is calling /v1: a service key (`Authorization: Bearer sbk_...`), checked before the
body is read. A refused key is answered 401 and logged with the client's address, never with
what was presented."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sensor_billing.errors import ServiceKeyRefusedError
from sensor_billing.service_keys import Caller, Refusal, ServiceKeyVerifier

logger = logging.getLogger("sensor_billing.api")

# Declares the scheme in the OpenAPI document; the check itself is `authenticate`, which the
# /v1 route class runs before anything else (see `api.route`).
service_key_scheme = HTTPBearer(
    scheme_name="ServiceKey",
    bearerFormat="sbk_...",
    description="A service key, made with `sensor-billing keys create --name NAME`.",
    auto_error=False,
)


def presented_key(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


async def authenticate(request: Request) -> Caller:
    verifier = request.app.state.service_keys
    assert isinstance(verifier, ServiceKeyVerifier)
    verdict = await verifier.identify(presented_key(request))
    if isinstance(verdict, Refusal):
        client = request.client.host if request.client else "-"
        logger.warning(
            "api request refused: %s (client %s, %s %s)",
            verdict.reason,
            client,
            request.method,
            request.url.path,
            extra={"client": client, "refusal": verdict.reason},
        )
        raise ServiceKeyRefusedError(verdict.message)
    request.state.caller = verdict
    return verdict


async def current_caller(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(service_key_scheme)],
) -> Caller:
    """The request's service key, verified by the route class before the body was read.

    `async` although it awaits nothing: FastAPI runs a plain `def` dependency in its thread
    pool, a hop of about a twentieth of GET /billing's time (py-spy, benchmarks/billing_read).
    """
    caller = request.state.caller
    assert isinstance(caller, Caller)
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
