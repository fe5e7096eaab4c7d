"""`/v1/webhook_endpoints...` and `/v1/events...` (the snapshot events the stand-in made).

`GET /v1/events` filters by `type` and `delivery_success` (false: events some endpoint has not
answered 2xx), newest first (docs: api/events/list).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import event_queries, webhook_endpoints
from .auth import require_secret_key
from .billing_records import SnapshotEvent
from .errors import no_such
from .faults import FaultTarget
from .pagination import list_page
from .routes_common import catalog_write, object_read, path_id
from .state import StandinState
from .webhook_events import render
from .wire import ok, query_form, standin_of, to_response

# The create answer is the one time Stripe shows the secret.
create_endpoint = catalog_write(
    lambda state, _, form: webhook_endpoints.create_endpoint(state, form).to_stripe(
        with_secret=True
    ),
    answers="webhook_endpoint",
)
delete_endpoint = catalog_write(
    lambda state, request, _: {
        "id": webhook_endpoints.delete_endpoint(state, path_id(request)).id,
        "object": "webhook_endpoint",
        "deleted": True,
    }
)

retrieve_endpoint = object_read(
    lambda state, request: webhook_endpoints.get_endpoint(state, path_id(request)).to_stripe()
)


async def list_endpoints(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    query = query_form(request)
    page = list_page(
        webhook_endpoints.list_endpoints(state, query),
        query=query,
        url="/v1/webhook_endpoints",
        id_of=lambda endpoint: endpoint.id,
        render=lambda endpoint: endpoint.to_stripe(),
    )
    return to_response(ok(page))


def _read_event(state: StandinState, request: Request) -> dict[str, Any]:
    event_id = path_id(request)
    with state.lock:
        event = state.webhook_events.get(event_id)
    if event is None:
        raise no_such("event", event_id)
    return render(state, event)


retrieve_event = object_read(_read_event, fault_target=FaultTarget.EVENTS)


async def list_events(request: Request) -> Response:
    state = standin_of(request)
    require_secret_key(state, request.headers)
    query = query_form(request)
    page = list_page(
        event_queries.list_events(state, query),
        query=query,
        url="/v1/events",
        id_of=_event_id,
        render=lambda event: render(state, event),
    )
    return to_response(ok(page))


def _event_id(event: SnapshotEvent) -> str:
    return event.id


routes = [
    Route("/v1/webhook_endpoints", create_endpoint, methods=["POST"]),
    Route("/v1/webhook_endpoints", list_endpoints, methods=["GET"]),
    Route("/v1/webhook_endpoints/{object_id}", retrieve_endpoint, methods=["GET"]),
    Route("/v1/webhook_endpoints/{object_id}", delete_endpoint, methods=["DELETE"]),
    Route("/v1/events", list_events, methods=["GET"]),
    Route("/v1/events/{object_id}", retrieve_event, methods=["GET"]),
]
