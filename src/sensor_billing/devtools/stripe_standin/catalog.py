"""Meters and customers: enough of Stripe's objects for set-up commands and summaries."""

from __future__ import annotations

from .errors import invalid_param, no_such
from .forms import Form, merge_metadata, optional_map, optional_str, required_str, sub_form
from .metering import DEFAULT_CUSTOMER_KEY, DEFAULT_VALUE_KEY, MAX_NAME_LENGTH
from .records import Customer, Formula, Meter, new_id
from .state import StandinState

_FORMULAS: dict[str, Formula] = {"sum": "sum", "count": "count", "last": "last"}
_TIME_WINDOWS = ("day", "hour")


def create_meter(state: StandinState, form: Form) -> Meter:
    display_name = required_str(form, "display_name")
    event_name = required_str(form, "event_name")
    if len(event_name) > MAX_NAME_LENGTH:
        raise invalid_param("event_name", "event_name must be at most 100 characters.")
    aggregation = sub_form(form, "default_aggregation") or {}
    raw_formula = required_str(aggregation, "formula", param="default_aggregation[formula]")
    formula = _FORMULAS.get(raw_formula)
    if formula is None:
        raise invalid_param(
            "default_aggregation[formula]",
            f"Invalid default_aggregation[formula]: must be one of {', '.join(_FORMULAS)}",
        )
    customer_key = _customer_key(form)
    value_key = DEFAULT_VALUE_KEY
    value_settings = sub_form(form, "value_settings")
    if value_settings is not None:
        value_key = required_str(
            value_settings, "event_payload_key", param="value_settings[event_payload_key]"
        )
    window = optional_str(form, "event_time_window")
    if window is not None and window not in _TIME_WINDOWS:
        raise invalid_param("event_time_window", "event_time_window must be day or hour.")
    with state.lock:
        if state.active_meter(event_name) is not None:
            # Events find their meter by event_name, so two active meters cannot share one.
            raise invalid_param(
                "event_name", f"An active meter with event_name {event_name} already exists."
            )
        now = int(state.clock.now())
        meter = Meter(
            id=new_id("mtr_test_"),
            display_name=display_name,
            event_name=event_name,
            formula=formula,
            customer_key=customer_key,
            value_key=value_key,
            event_time_window=window,
            created=now,
            updated=now,
        )
        state.meters[meter.id] = meter
        return meter


def _customer_key(form: Form) -> str:
    mapping = sub_form(form, "customer_mapping")
    if mapping is None:
        return DEFAULT_CUSTOMER_KEY
    mapping_type = required_str(mapping, "type", param="customer_mapping[type]")
    if mapping_type != "by_id":
        raise invalid_param("customer_mapping[type]", "customer_mapping[type] must be by_id.")
    return required_str(mapping, "event_payload_key", param="customer_mapping[event_payload_key]")


def get_meter(state: StandinState, meter_id: str) -> Meter:
    with state.lock:
        meter = state.meters.get(meter_id)
        if meter is None:
            raise no_such("billing.meter", meter_id)
        return meter


def deactivate_meter(state: StandinState, meter_id: str) -> Meter:
    with state.lock:
        meter = get_meter(state, meter_id)
        if meter.status == "active":
            now = int(state.clock.now())
            meter.status = "inactive"
            meter.deactivated_at = now
            meter.updated = now
        return meter


def list_meters(state: StandinState, status: str | None) -> list[Meter]:
    """Newest first, as Stripe lists."""
    if status is not None and status not in ("active", "inactive"):
        raise invalid_param("status", "status must be active or inactive.")
    with state.lock:
        meters = [m for m in state.meters.values() if status is None or m.status == status]
    return meters[::-1]


def create_customer(state: StandinState, form: Form) -> Customer:
    metadata = optional_map(form, "metadata") or {}
    with state.lock:
        customer = Customer(
            id=new_id("cus_", 14),
            created=int(state.clock.now()),
            name=optional_str(form, "name"),
            email=optional_str(form, "email"),
            metadata=metadata,
        )
        state.customers[customer.id] = customer
        return customer


def update_customer(state: StandinState, customer_id: str, form: Form) -> Customer:
    """`POST /v1/customers/{id}`: the fields given are set, metadata merged (an empty value
    unsets its key); a deleted customer is not found."""
    with state.lock:
        customer = get_customer(state, customer_id)
        if customer.deleted:
            raise no_such("customer", customer_id)
        if "name" in form:
            customer.name = optional_str(form, "name")
        if "email" in form:
            customer.email = optional_str(form, "email")
        merge_metadata(customer.metadata, optional_map(form, "metadata"))
        return customer


def get_customer(state: StandinState, customer_id: str) -> Customer:
    with state.lock:
        customer = state.customers.get(customer_id)
        if customer is None:
            raise no_such("customer", customer_id)
        return customer


def delete_customer(state: StandinState, customer_id: str) -> Customer:
    with state.lock:
        customer = get_customer(state, customer_id)
        if customer.deleted:
            raise no_such("customer", customer_id)
        customer.deleted = True
        return customer


def list_customers(state: StandinState) -> list[Customer]:
    with state.lock:
        return [c for c in state.customers.values() if not c.deleted][::-1]
