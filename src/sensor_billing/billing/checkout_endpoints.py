"""`POST /v1/organizations/{id}/checkout-sessions` and `.../portal-sessions`: thin; the work
is `billing.checkout`, run at most once per Idempotency-Key by `api.answer_once`."""

from __future__ import annotations

import uuid

import stripe
from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.api import (
    Answer,
    IdempotentRequestDep,
    StripeKeys,
    answer_once,
    post_responses,
    v1_router,
)
from sensor_billing.billing import checkout
from sensor_billing.billing.checkout_schemas import (
    CheckoutSessionAnswer,
    CheckoutSessionRequest,
    PortalSessionAnswer,
    PortalSessionRequest,
    SessionAnswer,
)
from sensor_billing.db import SessionFactory

router = v1_router(tags=["billing"])


def _app_parts(request: Request) -> tuple[SessionFactory, stripe.StripeClient | None]:
    state = request.app.state
    return state.sessions, getattr(state, "stripe", None)


def created(
    answer: type[SessionAnswer], started: checkout.StartedSession, organization_id: uuid.UUID
) -> Answer:
    body = answer(
        id=started.id,
        url=started.url,
        organization_id=organization_id,
        customer_id=started.customer_id,
    )
    return Answer(201, body.model_dump(mode="json"))


@router.post(
    "/organizations/{organization_id}/checkout-sessions",
    status_code=201,
    response_model=CheckoutSessionAnswer,
    responses=post_responses(404, 409, 502, 503),
    summary="Start a subscription: a Stripe Checkout Session",
)
async def create_checkout_session(
    request: Request,
    organization_id: uuid.UUID,
    body: CheckoutSessionRequest,
    call: IdempotentRequestDep,
) -> JSONResponse:
    """A Checkout Session in subscription mode with the two metered prices, for the
    organization's Stripe customer (made first when it has none). The organization's other open
    sessions are expired first, so only the newest can be paid. An organization with a live
    subscription gets 409 `subscription_exists` naming the portal endpoint instead."""
    sessions, client = _app_parts(request)

    async def work(session: AsyncSession, keys: StripeKeys) -> Answer:
        started = await checkout.start_checkout(
            session,
            sessions,
            client,
            organization_id,
            success_url=body.success_url,
            cancel_url=body.cancel_url,
            keys=keys,
        )
        return created(CheckoutSessionAnswer, started, organization_id)

    return await answer_once(sessions, call, work)


@router.post(
    "/organizations/{organization_id}/portal-sessions",
    status_code=201,
    response_model=PortalSessionAnswer,
    responses=post_responses(404, 409, 502, 503),
    summary="Manage the subscription: a Stripe Billing Portal session",
)
async def create_portal_session(
    request: Request,
    organization_id: uuid.UUID,
    body: PortalSessionRequest,
    call: IdempotentRequestDep,
) -> JSONResponse:
    """A Billing Portal session for the organization's Stripe customer (409
    `customer_missing` before its first checkout)."""
    sessions, client = _app_parts(request)

    async def work(session: AsyncSession, keys: StripeKeys) -> Answer:
        started = await checkout.open_portal(
            session, client, organization_id, return_url=body.return_url, keys=keys
        )
        return created(PortalSessionAnswer, started, organization_id)

    return await answer_once(sessions, call, work)
