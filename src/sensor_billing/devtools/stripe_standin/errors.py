"""Stripe-shaped refusals, rendered as `{"error": {"type", "code", "message", "param"}}`.

    StripeRefusalError              any answer Stripe gives instead of doing the work
     ├── AuthenticationRefusedError 401, missing or unknown key / session token
     │    └── SessionExpiredError   401 `temporary_session_expired` (v2 stream)
     ├── InvalidRequestError        400 / 404 `invalid_request_error`
     ├── IdempotencyConflictError   400 / 409 `idempotency_error`
     ├── RateLimitedError           429, with `Stripe-Rate-Limited-Reason`
     └── ApiFailureError            500 `api_error`

`saved_by_idempotency` says whether Stripe's idempotency layer keeps the answer: Stripe saves a
result only when the endpoint "began executing"; parameter validation failures, 429s and
conflicts with a concurrent request are not saved (docs: api/idempotent_requests).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_ERROR_DOCS = "https://docs.stripe.com/error-codes"


@dataclass(frozen=True)
class WireAnswer:
    """One HTTP answer as the stand-in sends it, and as the idempotency layer saves it."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


class StripeRefusalError(Exception):
    status = 400
    error_type = "invalid_request_error"
    saved_by_idempotency = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        error_type: str | None = None,
        saved_by_idempotency: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type
        if saved_by_idempotency is not None:
            self.saved_by_idempotency = saved_by_idempotency

    def to_answer(self) -> WireAnswer:
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"{_ERROR_DOCS}#{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        return WireAnswer(self.status, {"error": error}, self.headers)


class AuthenticationRefusedError(StripeRefusalError):
    # Stripe answers a bad key with HTTP 401 but error type `invalid_request_error`;
    # the SDK picks `stripe.AuthenticationError` from the status code.
    status = 401


class SessionExpiredError(AuthenticationRefusedError):
    # v2 stream, documented error `billing_meter_event_session_expired`; the SDK maps the type
    # `temporary_session_expired` to `stripe.TemporarySessionExpiredError`.
    error_type = "temporary_session_expired"


class InvalidRequestError(StripeRefusalError):
    pass


class IdempotencyConflictError(StripeRefusalError):
    error_type = "idempotency_error"


class RateLimitedError(StripeRefusalError):
    status = 429


class ApiFailureError(StripeRefusalError):
    status = 500
    error_type = "api_error"


def missing_param(param: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def invalid_param(param: str, message: str, code: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(message, code=code, param=param)


def no_such(kind: str, object_id: str, param: str = "id") -> InvalidRequestError:
    return InvalidRequestError(
        f"No such {kind}: '{object_id}'", code="resource_missing", param=param, status=404
    )


def no_such_reference(kind: str, object_id: str, param: str) -> InvalidRequestError:
    """A missing object named in a parameter is a 400; only a missing path object is a 404."""
    return InvalidRequestError(
        f"No such {kind}: '{object_id}'", code="resource_missing", param=param
    )
