"""The /v1 API platform: service-key authentication, bounded JSON bodies, Idempotency-Key,
and the error schema every operation shares. Domains put their operations on a `v1_router`."""

from sensor_billing.api.auth import CallerDep
from sensor_billing.api.idempotency import (
    Answer,
    IdempotentRequestDep,
    StripeKeys,
    answer_once,
)
from sensor_billing.api.router import post_responses, v1_router
from sensor_billing.api.schemas import ErrorAnswer, error_responses

__all__ = [
    "Answer",
    "CallerDep",
    "ErrorAnswer",
    "IdempotentRequestDep",
    "StripeKeys",
    "answer_once",
    "error_responses",
    "post_responses",
    "v1_router",
]
