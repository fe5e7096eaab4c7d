"""`POST /v1/billing/meter_events` and `POST /v1/billing/meter_event_adjustments`."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import metering
from .auth import require_secret_key
from .calls import serve_call
from .destinations import dispatch_undelivered
from .errors import WireAnswer, invalid_param, missing_param
from .faults import FaultTarget
from .forms import (
    Form,
    optional_int,
    optional_str,
    parse_form,
    refuse_unknown,
    required_str,
    sub_form,
)
from .limits import admit_metering_call, customer_meter_slot
from .state import StandinState
from .wire import ok, request_id_of, standin_of

# What each endpoint takes (docs: api/billing/meter-event/create, meter-event-adjustment/create);
# `expand` is accepted by every endpoint.
_METER_EVENT_PARAMS = frozenset({"event_name", "payload", "identifier", "timestamp", "expand"})
_ADJUSTMENT_PARAMS = frozenset({"type", "event_name", "cancel", "expand"})
_CANCEL_PARAMS = frozenset({"identifier"})


async def create_meter_event(request: Request) -> Response:
    state = standin_of(request)

    async def work(body: bytes, idempotency_key: str | None) -> WireAnswer:
        admit_metering_call(state)
        incoming = _incoming_event(state, parse_form(body.decode()), idempotency_key, request)
        customer_key, _ = metering.payload_keys(state, incoming.event_name)
        with customer_meter_slot(state, incoming.payload[customer_key], incoming.event_name):
            latency = state.config.processing_latency_seconds
            if latency:
                await asyncio.sleep(latency)
            record = metering.accept_v1(state, incoming)
        dispatch_undelivered(state)
        return ok(record.to_stripe())

    return await serve_call(
        request,
        state,
        via="v1",
        authenticate=lambda: require_secret_key(state, request.headers),
        work=work,
        fault_target=FaultTarget.METERING,
    )


def _incoming_event(
    state: StandinState, form: Form, idempotency_key: str | None, request: Request
) -> metering.IncomingMeterEvent:
    refuse_unknown(form, _METER_EVENT_PARAMS)
    event_name = required_str(form, "event_name")
    if len(event_name) > metering.MAX_NAME_LENGTH:
        raise invalid_param("event_name", "event_name must be at most 100 characters.")
    payload_form = sub_form(form, "payload")
    if not payload_form:
        raise missing_param("payload")
    payload: dict[str, str] = {}
    for key, value in payload_form.items():
        if not isinstance(value, str):
            raise invalid_param(f"payload[{key}]", "payload values must be strings.")
        payload[key] = value
    # v1 checks the payload against the meter's keys (or Stripe's defaults) up front.
    for key in metering.payload_keys(state, event_name):
        if not payload.get(key):
            raise missing_param(f"payload[{key}]")
    identifier = optional_str(form, "identifier")
    if identifier is not None and not 1 <= len(identifier) <= metering.MAX_NAME_LENGTH:
        raise invalid_param("identifier", "identifier must be 1 to 100 characters.")
    timestamp = optional_int(form, "timestamp")
    if timestamp is not None:
        with state.lock:
            problem = metering.timestamp_problem(timestamp, state.clock.now())
        if problem is not None:
            raise invalid_param(
                "timestamp",
                "Timestamp must be within the past 35 calendar days and at most 5 minutes "
                "in the future.",
            )
    return metering.IncomingMeterEvent(
        event_name=event_name,
        payload=payload,
        identifier=identifier,
        timestamp=timestamp,
        via="v1",
        idempotency_key=idempotency_key,
        request_id=request_id_of(request),
    )


async def create_meter_event_adjustment(request: Request) -> Response:
    state = standin_of(request)

    async def work(body: bytes, idempotency_key: str | None) -> WireAnswer:
        form = parse_form(body.decode())
        refuse_unknown(form, _ADJUSTMENT_PARAMS)
        refuse_unknown(sub_form(form, "cancel") or {}, _CANCEL_PARAMS, within="cancel")
        adjustment_type = required_str(form, "type")
        if adjustment_type != "cancel":
            raise invalid_param("type", "type must be cancel.")
        event_name = required_str(form, "event_name")
        cancel = sub_form(form, "cancel") or {}
        identifier = required_str(cancel, "identifier", param="cancel[identifier]")
        metering.cancel(state, event_name, identifier)
        return ok(
            {
                "object": "billing.meter_event_adjustment",
                "cancel": {"identifier": identifier},
                "event_name": event_name,
                "livemode": False,
                "status": "complete",
                "type": "cancel",
            }
        )

    return await serve_call(
        request,
        state,
        via="v1",
        authenticate=lambda: require_secret_key(state, request.headers),
        work=work,
        fault_target=None,
    )


routes = [
    Route("/v1/billing/meter_events", create_meter_event, methods=["POST"]),
    Route("/v1/billing/meter_event_adjustments", create_meter_event_adjustment, methods=["POST"]),
]
