"""`/v1/checkout/sessions...`, and the hosted page a session's `url` opens (`/c/pay/{id}`).

The hosted page stands for Stripe's: it shows what the session bills and a Pay button that
completes it (checkout.py) and redirects to `success_url`, with `{CHECKOUT_SESSION_ID}`
replaced by the session's id (docs: payments/checkout/custom-success-page).
"""

from __future__ import annotations

import html
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from . import checkout
from .auth import require_secret_key
from .billing_records import CheckoutSession
from .calls import serve_call
from .errors import WireAnswer
from .expansion import expand_in_list
from .faults import FaultTarget
from .pagination import list_page
from .routes_common import catalog_write, object_read, path_id
from .state import StandinState
from .webhook_events import send_outbox_in_background
from .wire import ok, query_form, standin_of

create_session = catalog_write(
    lambda state, request, form: checkout.create_session(state, form, str(request.base_url)),
    fault_target=FaultTarget.CHECKOUT,
    after=send_outbox_in_background,
    answers="checkout.session",
)
expire_session = catalog_write(
    lambda state, request, _: checkout.expire_session(state, path_id(request)),
    fault_target=FaultTarget.CHECKOUT,
    after=send_outbox_in_background,
    answers="checkout.session",
)


def _read_session(state: StandinState, request: Request) -> dict[str, Any]:
    session = checkout.get_session(state, path_id(request))
    send_outbox_in_background(state)  # a session found expired sends its event
    return session.to_stripe()


retrieve_session = object_read(_read_session, fault_target=FaultTarget.CHECKOUT)


def _session_id(session: CheckoutSession) -> str:
    return session.id


async def list_sessions(request: Request) -> Response:
    """`GET /v1/checkout/sessions`; takes the faults planned for `checkout`, as its other
    calls do (a caller that lists before it expires must survive a failed list)."""
    state = standin_of(request)

    async def work(body: bytes, idempotency_key: str | None) -> WireAnswer:
        query = query_form(request)
        found = checkout.list_sessions(state, query)
        send_outbox_in_background(state)  # sessions found expired send their events
        return ok(
            list_page(
                found,
                query=query,
                url="/v1/checkout/sessions",
                id_of=_session_id,
                render=lambda session: session.to_stripe(),
                expand=lambda page: expand_in_list(state, "checkout.session", page, query),
            )
        )

    return await serve_call(
        request,
        state,
        via="v1",
        authenticate=lambda: require_secret_key(state, request.headers),
        work=work,
        fault_target=FaultTarget.CHECKOUT,
    )


async def hosted_page(request: Request) -> Response:
    state = standin_of(request)
    session = checkout.get_session(state, path_id(request))
    if request.method == "POST" and session.status == "open":
        checkout.complete_session(state, session.id)
        send_outbox_in_background(state)
        target = session.success_url.replace("{CHECKOUT_SESSION_ID}", session.id)
        return RedirectResponse(target, status_code=303)
    lines = "".join(
        f"<li>{html.escape(item.price)} &times; {item.quantity or 'usage'}</li>"
        for item in session.line_items
    )
    button = (
        '<form method="post"><button type="submit">Pay (stand-in)</button></form>'
        if session.status == "open"
        else f"<p>This session is {html.escape(session.status)}.</p>"
    )
    return HTMLResponse(
        f"<!doctype html><title>Checkout (Stripe stand-in)</title>"
        f"<h1>Subscribe</h1><ul>{lines}</ul>{button}"
    )


routes = [
    Route("/v1/checkout/sessions", create_session, methods=["POST"]),
    Route("/v1/checkout/sessions", list_sessions, methods=["GET"]),
    Route("/v1/checkout/sessions/{object_id}", retrieve_session, methods=["GET"]),
    Route("/v1/checkout/sessions/{object_id}/expire", expire_session, methods=["POST"]),
    Route("/c/pay/{object_id}", hosted_page, methods=["GET", "POST"]),
]
