"""Stripe v1 wire format: form-encoded bodies and query strings with bracket notation.

`payload[value]=25&payload[stripe_customer_id]=cus_1` becomes
`{"payload": {"value": "25", "stripe_customer_id": "cus_1"}}`. Every leaf is a string, as in
Stripe's API: the SDK encodes numbers and lists (`expand[0]=...`) the same way.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import parse_qsl

from .errors import InvalidRequestError, invalid_param, missing_param

FormValue = str | dict[str, "FormValue"]
Form = dict[str, FormValue]

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def parse_form(encoded: str) -> Form:
    form: Form = {}
    for raw_key, value in parse_qsl(encoded, keep_blank_values=True):
        match = _KEY.match(raw_key)
        if match is None:
            raise InvalidRequestError(f"Invalid parameter name: {raw_key}", param=raw_key)
        path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        _insert(form, path, value, raw_key)
    return form


def _insert(form: Form, path: list[str], value: str, raw_key: str) -> None:
    node = form
    for segment in path[:-1]:
        child = node.setdefault(segment, {})
        if not isinstance(child, dict):
            raise InvalidRequestError(f"Invalid parameter: {raw_key}", param=raw_key)
        node = child
    if isinstance(node.get(path[-1]), dict):
        raise InvalidRequestError(f"Invalid parameter: {raw_key}", param=raw_key)
    node[path[-1]] = value


def refuse_unknown(form: Form, known: Collection[str], *, within: str | None = None) -> None:
    """Stripe refuses a parameter the endpoint does not take (`parameter_unknown`) rather than
    ignoring it, so a misspelt or misplaced field never passes silently (docs: error-codes)."""
    for name in form:
        if name not in known:
            param = name if within is None else f"{within}[{name}]"
            raise InvalidRequestError(
                f"Received unknown parameter: {param}", code="parameter_unknown", param=param
            )


def refuse_unmodelled(
    form: Form,
    modelled: Collection[str],
    stripe_takes: Collection[str],
    *,
    within: str | None = None,
) -> None:
    """Like `refuse_unknown`, but a parameter Stripe takes (stripe_params.py) that the stand-in
    does not model is refused saying so, rather than as unknown to Stripe, and rather than
    ignored: a test must not pass because a filter or option was silently dropped."""
    for name in form:
        if name in modelled:
            continue
        param = name if within is None else f"{within}[{name}]"
        if name in stripe_takes:
            raise InvalidRequestError(
                f"The Stripe stand-in does not model `{param}` on this endpoint (Stripe takes "
                "it); leave it out or extend the stand-in.",
                param=param,
            )
        raise InvalidRequestError(
            f"Received unknown parameter: {param}", code="parameter_unknown", param=param
        )


def fingerprint_form(encoded: str) -> str:
    """Parameters in a canonical order, so a replay with the same params matches."""
    return "&".join(f"{k}={v}" for k, v in sorted(parse_qsl(encoded, keep_blank_values=True)))


def optional_str(form: Form, name: str, *, param: str | None = None) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_param(param or name, f"Invalid string: {param or name} must be a string.")
    return value


def required_str(form: Form, name: str, *, param: str | None = None) -> str:
    value = optional_str(form, name, param=param)
    if value is None or value == "":
        raise missing_param(param or name)
    return value


def optional_map(form: Form, name: str) -> dict[str, str] | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise invalid_param(name, f"Invalid hash: {name} must be a map of strings.")
    return {k: v for k, v in value.items() if isinstance(v, str)}


def optional_bool(form: Form, name: str) -> bool | None:
    value = optional_str(form, name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise invalid_param(name, f"Invalid boolean: {value}")
    return value == "true"


def optional_int(form: Form, name: str, *, param: str | None = None) -> int | None:
    value = optional_str(form, name, param=param)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid_param(
            param or name, f"Invalid integer: {value}", code="parameter_invalid_integer"
        ) from None


def required_int(form: Form, name: str) -> int:
    value = optional_int(form, name)
    if value is None:
        raise missing_param(name)
    return value


def sub_form(form: Form, name: str) -> Form | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_param(name, f"Invalid hash: {name} must be a hash.")
    return value


def merge_metadata(current: dict[str, str], given: dict[str, str] | None) -> None:
    """Stripe's update rule: keys given are set, an empty value unsets its key, others stay
    (docs: api/metadata)."""
    for key, value in (given or {}).items():
        if value == "":
            current.pop(key, None)
        else:
            current[key] = value
