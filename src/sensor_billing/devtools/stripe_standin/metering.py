"""Accepting, deduplicating, validating and cancelling meter events (v1 and v2 alike)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .destinations import create_v2_event
from .errors import InvalidRequestError
from .records import ErrorCode, ErrorReport, Meter, MeterEventRecord, Via, new_id
from .state import StandinState

# Identifiers are unique "within a rolling window of at least 24 hours"; after it the same
# identifier is accepted again (STRIPE.md, recording-usage-api). Cancellation is allowed for
# 24 h after Stripe received the event (meter_event_adjustments).
IDENTIFIER_WINDOW_SECONDS = 24 * 3600
CANCEL_WINDOW_SECONDS = 24 * 3600
# "within the past 35 calendar days and at most 5 minutes in the future" (clock drift).
MAX_AGE_SECONDS = 35 * 24 * 3600
MAX_FUTURE_SECONDS = 5 * 60
MAX_NAME_LENGTH = 100
DEFAULT_CUSTOMER_KEY = "stripe_customer_id"
DEFAULT_VALUE_KEY = "value"

# Whole numbers always; decimals on newer pages; negatives for corrections (STRIPE.md).
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


@dataclass(frozen=True)
class IncomingMeterEvent:
    event_name: str
    payload: dict[str, str]
    identifier: str | None
    timestamp: int | None
    via: Via
    idempotency_key: str | None
    request_id: str | None


def payload_keys(state: StandinState, event_name: str) -> tuple[str, str]:
    """The payload keys the meter reads: its mapping if it exists, else Stripe's defaults."""
    with state.lock:
        meter = state.active_meter(event_name)
    if meter is None:
        return DEFAULT_CUSTOMER_KEY, DEFAULT_VALUE_KEY
    return meter.customer_key, meter.value_key


def timestamp_problem(timestamp: int, now: float) -> ErrorCode | None:
    if timestamp < now - MAX_AGE_SECONDS:
        return ErrorCode.TIMESTAMP_TOO_FAR_IN_PAST
    if timestamp > now + MAX_FUTURE_SECONDS:
        return ErrorCode.TIMESTAMP_IN_FUTURE
    return None


def accept_v1(state: StandinState, incoming: IncomingMeterEvent) -> MeterEventRecord:
    """Store the event or refuse a duplicate identifier, as `POST /v1/billing/meter_events`."""
    with state.lock:
        now = state.clock.now()
        identifier = incoming.identifier or new_id("mevt_", 20)
        if _identifier_taken(state, identifier, now):
            state.counters.duplicates_refused += 1
            # "already recorded": retrying cannot help, hence Stripe-Should-Retry: false.
            raise InvalidRequestError(
                f"An event already exists with identifier {identifier}.",
                headers={"Stripe-Should-Retry": "false"},
                saved_by_idempotency=True,
            )
        return _store(state, incoming, identifier, now)


def accept_stream(state: StandinState, batch: list[IncomingMeterEvent]) -> int:
    """Store a v2 stream batch; duplicates are dropped silently (validation is asynchronous)."""
    stored = 0
    with state.lock:
        now = state.clock.now()
        for incoming in batch:
            identifier = incoming.identifier or new_id("mevt_", 20)
            if _identifier_taken(state, identifier, now):
                state.counters.duplicates_deduplicated += 1
                continue
            _store(state, incoming, identifier, now)
            stored += 1
    return stored


def cancel(state: StandinState, event_name: str, identifier: str) -> None:
    with state.lock:
        now = state.clock.now()
        matches = [
            event
            for event in state.events
            if event.identifier == identifier and event.event_name == event_name
        ]
        if not matches:
            raise InvalidRequestError(
                f"No meter event with identifier {identifier} was found for event_name "
                f"{event_name}.",
                param="cancel[identifier]",
            )
        event = matches[-1]
        if now >= event.created + CANCEL_WINDOW_SECONDS:
            raise InvalidRequestError(
                "Meter events can only be cancelled within 24 hours of being received; "
                f"the event with identifier {identifier} is older.",
                param="cancel[identifier]",
            )
        event.cancelled = True


def _identifier_taken(state: StandinState, identifier: str, now: float) -> bool:
    accepted_at = state.identifier_accepted_at.get(identifier)
    return accepted_at is not None and now < accepted_at + IDENTIFIER_WINDOW_SECONDS


def _store(
    state: StandinState, incoming: IncomingMeterEvent, identifier: str, now: float
) -> MeterEventRecord:
    meter = state.active_meter(incoming.event_name)
    customer_key, value_key = (
        (meter.customer_key, meter.value_key)
        if meter is not None
        else (DEFAULT_CUSTOMER_KEY, DEFAULT_VALUE_KEY)
    )
    record = MeterEventRecord(
        sequence=len(state.events) + 1,
        identifier=identifier,
        event_name=incoming.event_name,
        payload=dict(incoming.payload),
        timestamp=incoming.timestamp if incoming.timestamp is not None else int(now),
        created=now,
        via=incoming.via,
        idempotency_key=incoming.idempotency_key,
        request_id=incoming.request_id,
        customer=incoming.payload.get(customer_key),
        value=incoming.payload.get(value_key),
        meter_id=None if meter is None else meter.id,
    )
    problem = _asynchronous_validation(state, record, meter, now)
    if problem is not None:
        code, message = problem
        record.error_code = code
        report = ErrorReport(
            id=new_id("mtrerr_", 20),
            code=code,
            message=message,
            created=int(now),
            event_identifier=identifier,
            event_name=record.event_name,
            customer=record.customer,
            meter_id=record.meter_id,
            via=record.via,
        )
        state.reports.append(report)
        create_v2_event(state, report)
    state.events.append(record)
    state.identifier_accepted_at[identifier] = now
    return record


def _asynchronous_validation(
    state: StandinState, record: MeterEventRecord, meter: Meter | None, now: float
) -> tuple[ErrorCode, str] | None:
    """Checks Stripe runs after answering 2xx; failures become error reports, not usage."""
    if meter is None:
        if any(m.event_name == record.event_name for m in state.meters.values()):
            return ErrorCode.ARCHIVED_METER, f"The meter for {record.event_name} is inactive."
        return ErrorCode.NO_METER, f"No active meter was found for event {record.event_name}."
    late_or_early = timestamp_problem(record.timestamp, now)
    if late_or_early is not None:
        return late_or_early, f"Timestamp {record.timestamp} is outside the accepted range."
    if record.customer is None:
        return (
            ErrorCode.NO_CUSTOMER_DEFINED,
            f"The payload has no {meter.customer_key} to map the event to a customer.",
        )
    if state.strict_customers:
        customer = state.customers.get(record.customer)
        if customer is None or customer.deleted:
            return ErrorCode.CUSTOMER_NOT_FOUND, f"No such customer: {record.customer}."
    if record.value is None:
        return ErrorCode.VALUE_NOT_FOUND, f"The payload has no {meter.value_key}."
    if not _NUMBER.fullmatch(record.value):
        return ErrorCode.INVALID_VALUE, f"The value {record.value!r} is not a number."
    return None
