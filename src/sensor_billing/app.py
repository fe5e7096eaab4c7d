"""The FastAPI application: webhooks, health, readiness, Prometheus metrics, the /v1 API for
the SaaS backend and, with OPS_TOKEN set, the operations pages under /ops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from redis.asyncio import Redis
from starlette.types import Receive, Scope, Send

from sensor_billing import __version__
from sensor_billing.api.request_metrics import is_v1_request, observe_v1_request
from sensor_billing.billing.checkout_endpoints import router as checkout_router
from sensor_billing.billing.endpoints import router as billing_router
from sensor_billing.clock import utc_now
from sensor_billing.db import create_engine, create_session_factory
from sensor_billing.db.health import ping_database
from sensor_billing.http_errors import install_error_handlers
from sensor_billing.jobs.connection import open_queue
from sensor_billing.jobs.registry import QueueNames
from sensor_billing.logs import configure_logging
from sensor_billing.observability import render_metrics
from sensor_billing.ops import install_ops
from sensor_billing.service_keys import ServiceKeyVerifier
from sensor_billing.settings import Settings, get_settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client
from sensor_billing.webhooks.endpoint import install as install_webhook_route
from sensor_billing.webhooks.endpoint import is_webhook_delivery, serve_webhook
from sensor_billing.webhooks.entitlement_changes import EntitlementNotifier
from sensor_billing.webhooks.groups import HandledDeliveries
from sensor_billing.webhooks.lookup import EventLookup
from sensor_billing.webhooks.recent import RecentEvents
from sensor_billing.webhooks.recorder import EventRecorder

READINESS_TIMEOUT_SECONDS = 2.0


class SensorBillingApp(FastAPI):
    """FastAPI, except that a webhook delivery goes straight to its endpoint.

    `POST /webhooks/stripe` uses nothing FastAPI's middleware stack adds (dependencies, HTTP
    exception handlers, body limits: it bounds its own body). Skipping the stack's six layers
    raised the rate of duplicate deliveries one API process answers by about 60% in the
    webhook benchmark. Its errors are answered by the same functions as the app's handlers.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_webhook_delivery(scope):
            scope["app"] = self
            await serve_webhook(scope, receive, send)
            return
        if is_v1_request(scope):
            await observe_v1_request(super().__call__, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_served_app() -> FastAPI:
    """The app as `sensor-billing serve` runs it: logging set up in this process first.

    uvicorn imports this factory in every worker process, so each one formats its own lines
    (and uvicorn's, which propagate to the root logger) as LOG_FORMAT says.
    """
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            pool_timeout=settings.database_pool_timeout_seconds,
            application_name="sensor-billing-api",
        )
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessions = create_session_factory(engine)
        app.state.redis = redis
        app.state.recent_events = RecentEvents()
        app.state.service_keys = ServiceKeyVerifier(app.state.sessions)
        app.state.event_recorder = EventRecorder(engine)
        app.state.event_lookup = EventLookup(engine)
        billing_events = open_queue(settings.redis_url, QueueNames.BILLING_EVENTS)
        app.state.entitlement_notifier = EntitlementNotifier(
            billing_events, clock=lambda: app.state.clock(), grace=settings.past_due_grace
        )
        app.state.handled_deliveries = HandledDeliveries(engine, app.state.entitlement_notifier)
        # Thin webhook events are fetched in full from Stripe (without a key they answer 502),
        # and the /v1 checkout and portal endpoints call it (without a key: 503).
        stripe_http = create_http_client() if settings.stripe_api_key else None
        app.state.stripe = (
            create_stripe_client(settings, http_client=stripe_http) if stripe_http else None
        )
        try:
            yield
        finally:
            await app.state.event_recorder.aclose()
            await app.state.handled_deliveries.aclose()
            await app.state.service_keys.aclose()
            await app.state.event_lookup.aclose()
            await billing_events.close()
            if stripe_http is not None:
                await stripe_http.close_async()  # type: ignore[no-untyped-call]
            await redis.aclose()
            await engine.dispose()

    app = SensorBillingApp(
        title="sensor-billing",
        version=__version__,
        lifespan=lifespan,
        # Metrics go to Prometheus (/metrics); FastAPI's OpenTelemetry hooks would otherwise
        # look up the global providers on every request (about a tenth of a webhook's CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # What "now" is for entitlement (grace periods): a test replaces it to move time.
    app.state.clock = utc_now
    install_error_handlers(app)
    install_webhook_route(app)
    install_ops(app, settings)
    # The /v1 API (api.v1_router): one router per domain.
    app.include_router(checkout_router)
    app.include_router(billing_router)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """PostgreSQL and Redis answer; 503 naming what does not."""
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(
                ping_database(request.app.state.engine), READINESS_TIMEOUT_SECONDS
            )
            checks["postgresql"] = "ok"
        except Exception as error:  # any failure means not ready
            checks["postgresql"] = f"unavailable: {type(error).__name__}"
        try:
            await asyncio.wait_for(request.app.state.redis.ping(), READINESS_TIMEOUT_SECONDS)
            checks["redis"] = "ok"
        except Exception as error:
            checks["redis"] = f"unavailable: {type(error).__name__}"
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus exposition: this process's counters plus backlog gauges read now."""
        body, content_type = await render_metrics(
            request.app.state.engine, request.app.state.redis, request.headers.get("accept", "")
        )
        return Response(body, media_type=content_type)

    return app
