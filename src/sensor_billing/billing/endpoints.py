"""`GET /v1/organizations/{id}/billing` and `GET /v1/organizations/{id}/usage`: what the SaaS
backend reads. Thin: parse, read through `billing.standing` / `billing.usage`, answer.

`/billing` gates the product's pages, so it reads PostgreSQL only (no Stripe call, no write).
`/usage` asks Stripe for the invoice preview after its unit of work has ended, so no database
connection waits on Stripe.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Query, Request, Response

from sensor_billing.api import ErrorAnswer, error_responses, v1_router
from sensor_billing.billing.schemas import (
    BillingAnswer,
    UsageAnswer,
    billing_answer,
    usage_answer,
)
from sensor_billing.billing.standing import billing_view
from sensor_billing.billing.usage import attach_preview, period_request, read_usage
from sensor_billing.db import driver_connection, unit_of_work
from sensor_billing.settings import Settings

router = v1_router(tags=["billing"])

# A query parameter longer than this is no time: refused before it is parsed.
MAX_PARAMETER_LENGTH = 64

NO_CURRENT_PERIOD: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorAnswer,
        "description": "period=current, and the organization has no subscription with a "
        "current period (`no_current_period`): ask with from and to",
    }
}


def _settings(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


@router.get(
    "/organizations/{organization_id}/billing",
    response_model=BillingAnswer,
    responses=error_responses(404, 422),
    summary="Whether the organization is entitled, its subscription and prices",
)
async def get_organization_billing(request: Request, organization_id: uuid.UUID) -> Response:
    """Read from this service's copy of Stripe's state (kept by webhooks): no Stripe call."""
    state = request.app.state
    async with driver_connection(state.engine) as connection:
        view = await billing_view(
            connection,
            organization_id,
            now=state.clock(),
            grace=_settings(request).past_due_grace,
        )
    # Serialised here: FastAPI would validate the answer against its own model again first.
    return Response(billing_answer(view).model_dump_json(), media_type="application/json")


@router.get(
    "/organizations/{organization_id}/usage",
    response_model=UsageAnswer,
    responses={**error_responses(404, 422), **NO_CURRENT_PERIOD},
    summary="Usage in a billing period, and the amount due so far",
)
async def get_organization_usage(
    request: Request,
    organization_id: uuid.UUID,
    period: Annotated[
        str | None,
        Query(
            max_length=MAX_PARAMETER_LENGTH,
            description="`current`: the subscription's current period (the default)",
            examples=["current"],
        ),
    ] = None,
    start: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=MAX_PARAMETER_LENGTH,
            description="Start (included) of a period to read instead: ISO 8601 with an offset",
            examples=["2026-11-01T00:00:00Z"],
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            alias="to",
            max_length=MAX_PARAMETER_LENGTH,
            description="End (excluded), at most 366 days after `from`",
            examples=["2026-12-01T00:00:00Z"],
        ),
    ] = None,
) -> UsageAnswer:
    """Per meter, the ledger's usage in the period: sent to Stripe, pending, failed, and
    reported invalid after sending. For the current period, Stripe's invoice preview (amount
    due so far); where Stripe fails or does not answer within STRIPE_PREVIEW_TIMEOUT_SECONDS
    the ledger's figures still answer, the preview marked `unavailable`."""
    asked = period_request(period, start, end)
    state = request.app.state
    async with unit_of_work(state.sessions) as session:
        report = await read_usage(session, organization_id, asked)
    report = await attach_preview(
        report,
        getattr(state, "stripe", None),
        wait_seconds=_settings(request).stripe_preview_timeout_seconds,
    )
    return usage_answer(report)
