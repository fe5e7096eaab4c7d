"""What every /v1 operation may answer besides its own result: the error object, as the rest
of the app answers (`{"error": {"code", "message", ...}}`), documented per status."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class StripeErrorDetail(BaseModel):
    """What Stripe answered, passed on as Stripe said it."""

    status: int | None = Field(description="Stripe's HTTP status; null when it did not answer")
    code: str | None = Field(description="Stripe's error code, e.g. resource_missing")
    message: str | None = Field(description="Stripe's message")


class ErrorDetail(BaseModel):
    code: str = Field(description="What went wrong, for code to branch on")
    message: str = Field(description="The same for a person, naming the field or the limit")
    stripe: StripeErrorDetail | None = Field(
        default=None, description="On 502: what Stripe answered"
    )
    portal_sessions: str | None = Field(
        default=None,
        description="On 409 subscription_exists: the endpoint that opens the Billing Portal",
    )


class ErrorAnswer(BaseModel):
    error: ErrorDetail


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not JSON (`invalid_json`)",
    401: "No, a malformed, an unknown or a revoked service key (`unauthorized`)",
    404: "No organization with that id (`organization_not_found`)",
    409: (
        "The Idempotency-Key was first used for another request (`idempotency_key_reused`), "
        "or a request with it is still running (`idempotency_key_in_use`); or the state "
        "does not allow the operation (the code says which)"
    ),
    413: "The body is larger than 64 KiB (`payload_too_large`)",
    415: "The body is not declared as application/json (`unsupported_media_type`)",
    422: "A parameter or body field is missing or invalid; the message names it "
    "(`invalid_request`)",
    502: (
        "Stripe refused the call (`stripe_refused`; the answer is kept under the "
        "Idempotency-Key) or did not answer (`stripe_unavailable`; retry with the same key)"
    ),
    503: "Billing is not set up: no STRIPE_API_KEY, or `stripe setup` has not run "
    "(`checkout_not_configured`)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for an operation: the error schema under each status it can answer."""
    return {
        status: {"model": ErrorAnswer, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }
