"""`GET /v1/billing/meters/{id}/event_summaries`: the meter's formula over counted events.

Documented rules (api/billing/meter-event-summary/list): `customer`, `start_time` (inclusive)
and `end_time` (exclusive) are required and must align with minute boundaries; with
`value_grouping_window=hour` they must align with hours, with `day` with UTC midnight.
Assumed, not documented: every window in the range gets a summary (0 when empty), newest
window first as in Stripe's example, and `start_time` must be before `end_time`.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any

from .errors import invalid_param, no_such
from .forms import Form, optional_str, required_int, required_str
from .records import Meter, MeterEventRecord, json_number
from .state import StandinState

_WINDOW_SECONDS = {None: 60, "hour": 3600, "day": 86400}


def event_summaries(state: StandinState, meter: Meter, query: Form) -> list[dict[str, Any]]:
    customer = required_str(query, "customer")
    start = required_int(query, "start_time")
    end = required_int(query, "end_time")
    grouping = optional_str(query, "value_grouping_window")
    if grouping not in _WINDOW_SECONDS:
        raise invalid_param("value_grouping_window", "value_grouping_window must be hour or day.")
    step = _WINDOW_SECONDS[grouping]
    for name, moment in (("start_time", start), ("end_time", end)):
        if moment % step:
            unit = {60: "minute", 3600: "hour", 86400: "day"}[step]
            raise invalid_param(name, f"{name} must be aligned with {unit} boundaries.")
    if start >= end:
        raise invalid_param("end_time", "end_time must be after start_time.")
    with state.lock:
        if state.strict_customers and customer not in state.customers:
            raise no_such("customer", customer, param="customer")
        events = [
            event
            for event in state.events
            if event.counts and event.meter_id == meter.id and event.customer == customer
        ]
    windows = [(start, end)] if grouping is None else _windows(start, end, step)
    return [
        _summary(meter, customer, window_start, window_end, events)
        for window_start, window_end in reversed(windows)
    ]


def _windows(start: int, end: int, step: int) -> list[tuple[int, int]]:
    return [(moment, min(moment + step, end)) for moment in range(start, end, step)]


def _summary(
    meter: Meter, customer: str, start: int, end: int, events: list[MeterEventRecord]
) -> dict[str, Any]:
    inside = [event for event in events if start <= event.timestamp < end]
    return {
        "id": _summary_id(meter.id, customer, start, end),
        "object": "billing.meter_event_summary",
        "aggregated_value": json_number(aggregate(meter, inside)),
        "end_time": end,
        "livemode": False,
        "meter": meter.id,
        "start_time": start,
    }


def aggregate(meter: Meter, events: list[MeterEventRecord]) -> Decimal:
    """The meter's formula over counted events: sum, count, or the value last in time."""
    if not events:
        return Decimal(0)
    if meter.formula == "count":
        return Decimal(len(events))
    if meter.formula == "last":
        latest = max(events, key=lambda event: (event.timestamp, event.sequence))
        return latest.numeric_value
    return sum((event.numeric_value for event in events), Decimal(0))


def _summary_id(meter_id: str, customer: str, start: int, end: int) -> str:
    digest = hashlib.sha256(f"{meter_id}|{customer}|{start}|{end}".encode()).hexdigest()
    return f"mtrusg_test_{digest[:40]}"
