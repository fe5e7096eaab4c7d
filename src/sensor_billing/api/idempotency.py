"""Idempotency-Key on every /v1 POST, as Stripe's own API does it (docs: api/idempotent_requests).

- A key (1 to 255 characters) is bound to its first request: method, path and the body's
  parameters. The same key with another request is refused (409 `idempotency_key_reused`).
- Keys are one namespace for the whole service, not one per service key: the keys exist so
  the one SaaS backend can roll them, and a retry sent with the new key must still find its
  first answer.
- The request runs holding its key's row lock (`FOR UPDATE NOWAIT`), so a second request with
  the key while the first runs is refused (409 `idempotency_key_in_use`, as Stripe answers
  concurrent use) and never runs twice; the lock ends with the first request's transaction,
  also when its process dies, so a crash never blocks the key.
- Stored, and replayed with `Idempotent-Replayed: true` for 24 h: the endpoint's own answer,
  and Stripe's refusal (502 `stripe_refused`), which retrying cannot change. Like Stripe, the
  service stores answers only once the endpoint began executing: failures of validation
  (400, 413, 415, 422) come before the key is even looked at. Not stored either: refusals the
  endpoint makes before it calls Stripe (404, 409, 503; nothing was done) and Stripe not
  answering or failing (502 `stripe_unavailable`): retrying with the same key runs the
  request again, and its Stripe calls carry the same Stripe idempotency keys, so Stripe
  gives back what it made the first time instead of making it again. After a Stripe 5xx,
  which Stripe keeps under its key and would replay for 24 h, the next run's Stripe keys move
  on (`stripe_key_generation`), as the meter events' do.
- Expired keys (24 h) are taken over by a new request and pruned, 100 at a time, whenever a
  key is reserved: no job or command is needed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.api import idempotency_repository as repository
from sensor_billing.api.auth import CallerDep
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema.api import IDEMPOTENCY_KEY_MAX_LENGTH
from sensor_billing.errors import (
    ApiRequestError,
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    StripeRefusedError,
    StripeUnavailableError,
)
from sensor_billing.http_errors import error_status_and_body
from sensor_billing.service_keys import Caller

REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]

    def response(self, *, replayed: bool = False) -> JSONResponse:
        headers = {REPLAYED_HEADER: "true"} if replayed else None
        return JSONResponse(self.body, status_code=self.status, headers=headers)


@dataclass(frozen=True, slots=True)
class StripeKeys:
    """The Stripe idempotency keys of one request's Stripe calls, derived from its
    Idempotency-Key: a retry of the request makes the same calls under the same keys."""

    request_key: str | None
    generation: int = 0

    def for_call(self, call: str) -> str | None:
        if self.request_key is None:
            return None
        digest = hashlib.sha256(self.request_key.encode()).hexdigest()[:40]
        retry = f".retry{self.generation}" if self.generation else ""
        return f"sb-api-{call}-{digest}{retry}"


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    key: str | None
    caller: Caller
    method: str
    path: str
    parameters_sha256: bytes


def idempotent_request(
    request: Request,
    caller: CallerDep,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
            description=(
                "Makes a retry safe: the same key with the same request answers the first "
                "answer (with `Idempotent-Replayed: true`), for 24 h. A V4 UUID per operation."
            ),
        ),
    ] = None,
) -> IdempotentRequest:
    digest = request.state.parameters_sha256
    assert isinstance(digest, bytes)
    return IdempotentRequest(key, caller, request.method, request.url.path, digest)


IdempotentRequestDep = Annotated[IdempotentRequest, Depends(idempotent_request)]

Work = Callable[[AsyncSession, StripeKeys], Awaitable[Answer]]


async def answer_once(
    sessions: SessionFactory, request: IdempotentRequest, work: Work
) -> JSONResponse:
    """Run `work` (in the request's transaction, which this commits) at most once per key."""
    if request.key is None:
        async with unit_of_work(sessions) as session:
            answer = await work(session, StripeKeys(None))
        return answer.response()
    binding = repository.Binding(
        request.caller.key_id, request.method, request.path, request.parameters_sha256
    )
    async with unit_of_work(sessions) as session:
        await repository.reserve(session, request.key, binding)
    failure: Exception | None = None
    async with unit_of_work(sessions) as session:
        locked = await repository.lock(session, request.key)
        if locked is None:
            raise IdempotencyKeyInUseError(
                "a request with this Idempotency-Key is still running; retry it later"
            )
        row, expired = locked
        if expired:
            repository.take_over(row, binding)
        if not hmac.compare_digest(row.request_sha256, request.parameters_sha256):
            raise IdempotencyKeyReusedError(
                "this Idempotency-Key was first used for another request "
                f"({row.request_method} {row.request_path} with other parameters); "
                "use a new key for a new request"
            )
        if row.response_status is not None and row.response_body is not None:
            return Answer(row.response_status, row.response_body).response(replayed=True)
        try:
            # A savepoint: what the work wrote is undone if it fails, the key's row stays.
            async with session.begin_nested():
                answer = await work(session, StripeKeys(request.key, row.stripe_key_generation))
        except StripeRefusedError as error:
            answer = Answer(*error_status_and_body(error))
        except StripeUnavailableError as error:
            if error.status is not None and error.status >= 500:
                row.stripe_key_generation += 1
            failure = error
        except ApiRequestError as error:
            failure = error
        if failure is None:
            repository.store_answer(row, answer.status, answer.body)
    if failure is not None:
        raise failure
    return answer.response()
