"""The versioned, key-protected API: every /v1 operation is on a router made here.

A domain adds its operations to its own `v1_router(...)` and `app.py` includes it: the
router's route class checks the service key before anything else and bounds the body, its
dependency declares the key in the OpenAPI document, and its operation ids are the endpoint
functions' names (what generated clients call them).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute

from sensor_billing.api.auth import current_caller
from sensor_billing.api.route import V1Route
from sensor_billing.api.schemas import error_responses

V1_PREFIX: Final = "/v1"
# What any /v1 POST can answer before its endpoint runs.
BODY_ERRORS: Final = (400, 413, 415, 422)


def operation_id(route: APIRoute) -> str:
    return route.name


def v1_router(*, tags: list[str]) -> APIRouter:
    return APIRouter(
        prefix=V1_PREFIX,
        tags=list(tags),
        route_class=V1Route,
        dependencies=[Depends(current_caller)],
        responses=error_responses(401),
        generate_unique_id_function=operation_id,
    )


def post_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a /v1 POST: the body's errors and the endpoint's own."""
    return error_responses(*sorted({*BODY_ERRORS, *statuses}))
