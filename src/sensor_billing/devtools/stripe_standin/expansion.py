"""`expand[]`: fields that hold an id answered as the object instead (docs: api/expanding_objects).

Stripe rules followed: `expand` takes dotted paths ("expand multiple levels", at most four);
on a list the paths start with `data.`; a path that does not name an expandable field is
refused, "This property cannot be expanded (customer). You may want to try expanding
'data.customer' instead." (the wording as Stripe answers it: stripe-dotnet#1351,
gitpod-io/gitpod#13035). Expansion applies to API answers, never to webhook events.

Assumed where the docs are silent: the stand-in expands the ids it holds (`EXPANDABLE`); any
other path (Stripe expands more: a session's `line_items`, `default_payment_method`, ...) is
refused naming it, in the stand-in's words, before the call does anything, rather than
answered unexpanded. `expand[]=a&expand[]=b` keeps the last (the SDK sends `expand[0]`, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import InvalidRequestError, invalid_param
from .forms import Form, sub_form
from .state import StandinState

MAX_DEPTH = 4

# Per object type: the fields the stand-in expands, and the type of object each holds.
EXPANDABLE: dict[str, dict[str, str]] = {
    "checkout.session": {"customer": "customer", "subscription": "subscription"},
    "subscription": {"customer": "customer", "latest_invoice": "invoice"},
    "invoice": {"customer": "customer"},
}


def _customer(state: StandinState, object_id: str) -> dict[str, Any] | None:
    customer = state.customers.get(object_id)
    return None if customer is None else customer.to_stripe()


def _subscription(state: StandinState, object_id: str) -> dict[str, Any] | None:
    subscription = state.subscriptions.get(object_id)
    return None if subscription is None else subscription.to_stripe(state.prices)


def _invoice(state: StandinState, object_id: str) -> dict[str, Any] | None:
    invoice = state.invoices.get(object_id)
    return None if invoice is None else invoice.to_stripe(state.prices)


_LOOKUPS: dict[str, Callable[[StandinState, str], dict[str, Any] | None]] = {
    "customer": _customer,
    "subscription": _subscription,
    "invoice": _invoice,
}


def _asked(form: Form) -> list[tuple[str, list[str]]]:
    """(param, path) for each `expand[n]`, in order."""
    asked = sub_form(form, "expand") or {}
    return [
        (f"expand[{key}]", path.split(".")) for key, path in asked.items() if isinstance(path, str)
    ]


def check(object_type: str, form: Form) -> None:
    """Refuse, before anything runs, an `expand` path the stand-in cannot answer."""
    for param, path in _asked(form):
        _check_path(object_type, param, path)


def _check_path(object_type: str, param: str, path: list[str]) -> None:
    if len(path) > MAX_DEPTH:
        raise invalid_param(param, f"You can expand at most {MAX_DEPTH} levels of a property.")
    held = EXPANDABLE.get(object_type, {}).get(path[0])
    if held is None:
        fields = ", ".join(sorted(EXPANDABLE.get(object_type, {}))) or "nothing"
        raise invalid_param(
            param,
            f"The Stripe stand-in cannot expand `{'.'.join(path)}` on a {object_type}: it "
            f"expands {fields} there.",
        )
    if len(path) > 1:
        _check_path(held, param, path[1:])


def expand(state: StandinState, body: dict[str, Any], form: Form) -> dict[str, Any]:
    """`body` with the fields `form`'s `expand` names replaced by their objects (checked)."""
    object_type = str(body.get("object"))
    check(object_type, form)
    for _, path in _asked(form):
        _expand_path(state, object_type, body, path)
    return body


def check_list(item_type: str, form: Form) -> None:
    for param, path in _asked(form):
        if path[0] != "data" or len(path) == 1:
            dotted = ".".join(path)
            raise InvalidRequestError(
                f"This property cannot be expanded ({dotted}). "
                f"You may want to try expanding 'data.{dotted}' instead.",
                param=param,
            )
        _check_path(item_type, param, path[1:])


def expand_in_list(
    state: StandinState, item_type: str, items: list[dict[str, Any]], form: Form
) -> list[dict[str, Any]]:
    check_list(item_type, form)
    for _, path in _asked(form):
        for item in items:
            _expand_path(state, item_type, item, path[1:])
    return items


def _expand_path(
    state: StandinState, object_type: str, body: dict[str, Any], path: list[str]
) -> None:
    held = EXPANDABLE[object_type][path[0]]
    value = body.get(path[0])
    if isinstance(value, str):
        with state.lock:
            found = _LOOKUPS[held](state, value)
        if found is None:
            return
        body[path[0]] = value = found
    if len(path) > 1 and isinstance(value, dict):
        _expand_path(state, held, value, path[1:])
