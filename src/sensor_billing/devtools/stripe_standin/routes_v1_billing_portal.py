"""`POST /v1/billing_portal/sessions`, and the page a portal session's `url` opens."""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from . import billing_portal
from .faults import FaultTarget
from .routes_common import catalog_write, path_id
from .wire import standin_of

create_session = catalog_write(
    lambda state, request, form: billing_portal.create_portal_session(
        state, form, str(request.base_url)
    ),
    fault_target=FaultTarget.BILLING_PORTAL,
    answers="billing_portal.session",
)


async def portal_page(request: Request) -> Response:
    session = billing_portal.get_portal_session(standin_of(request), path_id(request))
    back = (
        f'<p><a href="{html.escape(session.return_url)}">Return</a></p>'
        if session.return_url
        else ""
    )
    return HTMLResponse(
        "<!doctype html><title>Billing portal (Stripe stand-in)</title>"
        f"<h1>Billing for {html.escape(session.customer)}</h1>{back}"
    )


routes = [
    Route("/v1/billing_portal/sessions", create_session, methods=["POST"]),
    Route("/p/session/{object_id}", portal_page, methods=["GET"]),
]
