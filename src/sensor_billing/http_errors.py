"""The one place that turns errors into HTTP answers: `{"error": {"code", "message"}}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from sensor_billing.errors import (
    ApiRequestError,
    CheckoutNotConfiguredError,
    CustomerDeletedError,
    CustomerMissingError,
    EventFetchError,
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    InvalidJsonBodyError,
    InvalidParameterError,
    NoBillingPeriodError,
    NoSuchOrganizationError,
    OpsRequestError,
    PayloadTooLargeError,
    RecordingInterruptedError,
    SensorBillingError,
    ServiceKeyRefusedError,
    StripeRefusedError,
    StripeUnavailableError,
    SubscriptionExistsError,
    UnsupportedMediaTypeError,
    WebhookNotConfiguredError,
    WebhookRejectedError,
)
from sensor_billing.ops.pages import error_response as ops_error_response

logger = logging.getLogger("sensor_billing.http")

STATUS_BY_ERROR: dict[type[SensorBillingError], int] = {
    PayloadTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    WebhookRejectedError: 400,
    WebhookNotConfiguredError: 503,
    RecordingInterruptedError: 503,
    # Stripe retries any non-2xx (docs: webhooks); 502 says the failure was upstream.
    EventFetchError: 502,
    ApiRequestError: 400,
    InvalidJsonBodyError: 400,
    ServiceKeyRefusedError: 401,
    NoSuchOrganizationError: 404,
    InvalidParameterError: 422,
    NoBillingPeriodError: 409,
    IdempotencyKeyReusedError: 409,
    IdempotencyKeyInUseError: 409,
    SubscriptionExistsError: 409,
    CustomerMissingError: 409,
    CustomerDeletedError: 409,
    CheckoutNotConfiguredError: 503,
    # A /v1 call Stripe refused or did not answer: the failure was upstream.
    StripeRefusedError: 502,
    StripeUnavailableError: 502,
}

# The realm of the /v1 API's 401 (RFC 6750); /ops has its own.
API_REALM = 'Bearer realm="sensor-billing"'


def status_for(error: SensorBillingError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[kind]
    return 500


def error_body(code: str, message: str) -> dict[str, dict[str, Any]]:
    return {"error": {"code": code, "message": message}}


def error_status_and_body(error: SensorBillingError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and `{"error": {"code", "message", ...}}` of an error (not /ops)."""
    body = error_body(getattr(error, "code", type(error).__name__), str(error))
    if isinstance(error, StripeRefusedError):
        body = error_body("stripe_refused", f"Stripe refused the call: {error.stripe_message}")
        body["error"]["stripe"] = stripe_detail(error.status, error.code, error.stripe_message)
    elif isinstance(error, StripeUnavailableError):
        message = f"Stripe did not answer the call: {error.stripe_message}; it can be retried"
        body = error_body("stripe_unavailable", message)
        body["error"]["stripe"] = stripe_detail(error.status, None, error.stripe_message)
    elif isinstance(error, ApiRequestError):
        body["error"].update(error.details)
    return status_for(error), body


def stripe_detail(status: int | None, code: str | None, message: str | None) -> dict[str, Any]:
    return {"status": status, "code": code, "message": message}


def service_error_response(request: Request, error: SensorBillingError) -> Response:
    if isinstance(error, OpsRequestError):
        # The /ops pages answer a browser with a page (sign-in for 401), a script with JSON.
        return ops_error_response(request, error)
    status, body = error_status_and_body(error)
    headers = {"WWW-Authenticate": API_REALM} if isinstance(error, ServiceKeyRefusedError) else None
    return JSONResponse(body, status_code=status, headers=headers)


def unexpected_error_response(request: Request, error: Exception) -> Response:
    # The traceback names code, not request data: no payload or secret reaches the log.
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(
        error_body("internal_error", "the request failed; it can be retried"), status_code=500
    )


def error_response(request: Request, error: Exception) -> Response:
    """The answer for an error raised by a route that runs outside FastAPI's handlers."""
    if isinstance(error, SensorBillingError):
        return service_error_response(request, error)
    return unexpected_error_response(request, error)


def describe_validation_error(error: RequestValidationError) -> str:
    """One sentence per bad parameter ("query parameter type: String should have at most 256
    characters"), without echoing what was sent."""
    parts = []
    for item in error.errors():
        where, *name = [str(part) for part in item.get("loc", ())] or ["request"]
        label = f"{where} parameter {'.'.join(name)}" if name else where
        parts.append(f"{label}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SensorBillingError)
    async def service_error(request: Request, error: SensorBillingError) -> Response:
        return service_error_response(request, error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(error.detail)),
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body("invalid_request", describe_validation_error(error)), status_code=422
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> Response:
        return unexpected_error_response(request, error)
