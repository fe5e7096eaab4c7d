"""The stand-in as an ASGI application."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from . import (
    routes_control,
    routes_control_billing,
    routes_v1_billing_portal,
    routes_v1_catalog,
    routes_v1_checkout,
    routes_v1_metering,
    routes_v1_products,
    routes_v1_subscriptions,
    routes_v1_webhooks,
    routes_v2_events,
    routes_v2_metering,
)
from .errors import StripeRefusalError
from .state import StandinState
from .wire import RequestIdMiddleware, render_http_exception, render_refusal


def create_app(state: StandinState) -> Starlette:
    app = Starlette(
        routes=[
            *routes_v1_metering.routes,
            *routes_v1_catalog.routes,
            *routes_v1_products.routes,
            *routes_v1_checkout.routes,
            *routes_v1_billing_portal.routes,
            *routes_v1_subscriptions.routes,
            *routes_v1_webhooks.routes,
            *routes_v2_metering.routes,
            *routes_v2_events.routes,
            *routes_control.routes,
            *routes_control_billing.routes,
        ],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={
            StripeRefusalError: render_refusal,
            HTTPException: render_http_exception,
        },
    )
    app.state.standin = state
    return app
