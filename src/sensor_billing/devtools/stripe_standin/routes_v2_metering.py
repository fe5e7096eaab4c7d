"""`POST /v2/billing/meter_event_session` and `POST /v2/billing/meter_event_stream` (JSON).

The stream answers `{}` once the batch is accepted: meter, customer, value and timestamp
checks are asynchronous there, and duplicate identifiers are dropped without a word. Only the
request's shape (and the session token) is checked synchronously.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import metering
from .auth import require_secret_key, require_stream_session
from .calls import serve_call
from .destinations import dispatch_undelivered
from .errors import InvalidRequestError, WireAnswer, invalid_param, missing_param
from .faults import FaultTarget
from .limits import admit_metering_call
from .sessions import create_session
from .wire import ok, request_id_of, standin_of

# "Supports up to 100 events per request" (meter_event_stream reference).
MAX_EVENTS_PER_REQUEST = 100


async def create_meter_event_session(request: Request) -> Response:
    state = standin_of(request)

    async def work(body: bytes, idempotency_key: str | None) -> WireAnswer:
        return ok(create_session(state).to_stripe())

    return await serve_call(
        request,
        state,
        via="v2",
        authenticate=lambda: require_secret_key(state, request.headers),
        work=work,
        fault_target=None,
    )


async def create_meter_event_stream(request: Request) -> Response:
    state = standin_of(request)

    async def work(body: bytes, idempotency_key: str | None) -> WireAnswer:
        admit_metering_call(state)
        batch = [
            _incoming_event(index, event, idempotency_key, request_id_of(request))
            for index, event in enumerate(_events_of(body))
        ]
        metering.accept_stream(state, batch)
        dispatch_undelivered(state)
        return ok({})

    return await serve_call(
        request,
        state,
        via="v2",
        authenticate=lambda: require_stream_session(state, request.headers),
        work=work,
        fault_target=FaultTarget.METERING,
    )


def _events_of(body: bytes) -> list[Any]:
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        raise InvalidRequestError("The request body is not valid JSON.") from None
    if not isinstance(document, dict) or "events" not in document:
        raise missing_param("events")
    events = document["events"]
    if not isinstance(events, list):
        raise invalid_param("events", "events must be an array.")
    if len(events) > MAX_EVENTS_PER_REQUEST:
        raise invalid_param(
            "events", f"events can hold at most {MAX_EVENTS_PER_REQUEST} events per request."
        )
    return events


def _incoming_event(
    index: int, event: Any, idempotency_key: str | None, request_id: str | None
) -> metering.IncomingMeterEvent:
    where = f"events[{index}]"
    if not isinstance(event, dict):
        raise invalid_param(where, f"{where} must be an object.")
    event_name = event.get("event_name")
    if not isinstance(event_name, str) or not event_name:
        raise missing_param(f"{where}.event_name")
    if len(event_name) > metering.MAX_NAME_LENGTH:
        raise invalid_param(f"{where}.event_name", "event_name must be at most 100 characters.")
    payload = event.get("payload")
    if not isinstance(payload, dict):
        raise missing_param(f"{where}.payload")
    if not all(isinstance(v, str) for v in payload.values()):
        raise invalid_param(f"{where}.payload", "payload must be a map of strings.")
    identifier = event.get("identifier")
    if identifier is not None and (
        not isinstance(identifier, str) or not 1 <= len(identifier) <= metering.MAX_NAME_LENGTH
    ):
        raise invalid_param(f"{where}.identifier", "identifier must be 1 to 100 characters.")
    return metering.IncomingMeterEvent(
        event_name=event_name,
        payload={str(k): str(v) for k, v in payload.items()},
        identifier=identifier,
        timestamp=_timestamp(where, event.get("timestamp")),
        via="v2",
        idempotency_key=idempotency_key,
        request_id=request_id,
    )


def _timestamp(where: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise invalid_param(f"{where}.timestamp", "timestamp must be an RFC 3339 date-time.")
    return int(moment.timestamp())


routes = [
    Route("/v2/billing/meter_event_session", create_meter_event_session, methods=["POST"]),
    Route("/v2/billing/meter_event_stream", create_meter_event_stream, methods=["POST"]),
]
