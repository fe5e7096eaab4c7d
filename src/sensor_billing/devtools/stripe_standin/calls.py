"""How one POST runs: authentication, injected faults, the idempotency layer, the work."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from .errors import InvalidRequestError, StripeRefusalError, WireAnswer
from .fault_delivery import deliver_fault, server_error
from .faults import FaultKind, FaultTarget
from .forms import fingerprint_form
from .idempotency import MAX_KEY_LENGTH, V1_KEY_LIFETIME_SECONDS, V2_KEY_LIFETIME_SECONDS
from .records import Via
from .state import StandinState
from .wire import to_response

Work = Callable[[bytes, str | None], Awaitable[WireAnswer]]
# Refused before the endpoint runs, whatever `recorded_before_*` says.
_IN_FRONT_OF_THE_API = frozenset({FaultKind.RATE_LIMITED, FaultKind.INVALID_REQUEST})


async def serve_call(
    request: Request,
    state: StandinState,
    *,
    via: Via,
    authenticate: Callable[[], object],
    work: Work,
    fault_target: FaultTarget | None,
) -> Response:
    """`work(body, idempotency_key)` does the call; faults apply where the plan targets
    `fault_target` (None: never)."""
    authenticate()
    decision = state.faults.draw(fault_target) if fault_target is not None else None
    if decision is not None:
        state.count_fault(str(decision.kind))
        if decision.kind in _IN_FRONT_OF_THE_API or not decision.recorded_before:
            # The fault sits in front of the API: nothing executed, nothing saved.
            return await deliver_fault(request, decision, None)
    body = await request.body()
    # A 500 from an endpoint that began executing is what Stripe's idempotency layer saves: a
    # replay with the same key gets the 500 again, for the key's lifetime (docs:
    # api/idempotent_requests, "including 500 errors"), whatever the call did before it.
    saved_instead = (
        server_error() if decision is not None and decision.kind is FaultKind.SERVER_ERROR else None
    )
    answer = await _run_idempotent(request, state, via, body, work, saved_instead)
    if decision is not None:
        return await deliver_fault(request, decision, answer)
    return to_response(answer)


async def _run_idempotent(
    request: Request,
    state: StandinState,
    via: Via,
    body: bytes,
    work: Work,
    saved_instead: WireAnswer | None = None,
) -> WireAnswer:
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > MAX_KEY_LENGTH:
        raise InvalidRequestError(
            f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters.",
            param="Idempotency-Key",
        )
    if key is not None:
        query = fingerprint_form(request.url.query)
        fingerprint = f"{request.method} {request.url.path}?{query} {_canonical(body, via)}"
        lifetime = V1_KEY_LIFETIME_SECONDS if via == "v1" else V2_KEY_LIFETIME_SECONDS
        saved = state.idempotency.begin(key, fingerprint, lifetime)
        if saved is not None:
            with state.lock:
                state.counters.idempotent_replays += 1
            replayed = {**saved.headers, "Idempotent-Replayed": "true"}
            return dataclasses.replace(saved, headers=replayed)
    try:
        answer = await work(body, key)
    except StripeRefusalError as refusal:
        answer = refusal.to_answer()
        if not refusal.saved_by_idempotency:
            if key is not None:
                state.idempotency.release(key)
            return answer
    except BaseException:
        if key is not None:
            state.idempotency.release(key)
        raise
    if key is not None:
        state.idempotency.save(key, saved_instead or answer)
    return answer


def _canonical(body: bytes, via: Via) -> str:
    text = body.decode("utf-8", errors="replace")
    if via == "v1":
        return fingerprint_form(text)
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return text
