"""`GET /v2/core/events/{id}`: the full v2 event behind a thin event (secret key).

Injected faults apply, as on the metering endpoints: a receiver must survive a failed fetch
(answer non-2xx so that Stripe delivers again). Assumed, not documented: an unknown id is a
404 `invalid_request_error` with code `resource_missing`, as v1 answers.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import require_secret_key
from .calls import serve_call
from .errors import WireAnswer, no_such
from .faults import FaultTarget
from .routes_common import path_id
from .wire import ok, standin_of


async def retrieve_event(request: Request) -> Response:
    state = standin_of(request)
    event_id = path_id(request)

    async def work(body: bytes, idempotency_key: str | None) -> WireAnswer:
        with state.lock:
            event = state.v2_events.get(event_id)
        if event is None:
            raise no_such("event", event_id)
        return ok(event.to_stripe())

    return await serve_call(
        request,
        state,
        via="v2",
        authenticate=lambda: require_secret_key(state, request.headers),
        work=work,
        fault_target=FaultTarget.METERING,
    )


routes = [Route("/v2/core/events/{object_id}", retrieve_event, methods=["GET"])]
