"""What fields an object Stripe answers carries, by two references: the official SDK's types
(a field typed without `Optional` is always present) and the objects Stripe recorded
(tests/fixtures/stripe), less the fields the SDK no longer knows (removed by later versions)."""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Iterator
from typing import Any

import stripe
from stripe._list_object import ListObject
from stripe._stripe_object import StripeObject

from tests.support.stripe_events import FIXTURES


def sdk_fields(cls: type[StripeObject]) -> dict[str, Any]:
    """The fields the SDK declares on `cls`, with their types."""
    declared: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        declared.update(inspect.get_annotations(klass))
    return {
        name: hint
        for name, hint in declared.items()
        if not name.startswith("_") and typing.get_origin(hint) is not typing.ClassVar
    }


def _optional(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _resolve(hint: Any) -> Any:
    if isinstance(hint, typing.ForwardRef):
        hint = hint.__forward_arg__
    if isinstance(hint, str):
        return getattr(stripe, hint, None)
    return hint


def _object_classes(hint: Any) -> Iterator[type[StripeObject]]:
    """The SDK object classes a value of this type can hold (not inside a list object)."""
    hint = _resolve(hint)
    if typing.get_origin(hint) is ListObject:
        return
    if isinstance(hint, type) and issubclass(hint, StripeObject) and hint is not ListObject:
        yield hint
    for argument in typing.get_args(hint):
        yield from _object_classes(argument)


def _list_item_class(hint: Any) -> type[StripeObject] | None:
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is ListObject:
            item = _resolve(typing.get_args(candidate)[0])
            return item if isinstance(item, type) else None
    return None


def missing_required_fields(cls: type[StripeObject], value: Any, path: str = "") -> list[str]:
    """Where `value` (as the API answered it) lacks a field the SDK types as always there,
    looking into every nested object, list item and list object it holds."""
    if not isinstance(value, dict):
        return []
    missing = []
    for name, hint in sdk_fields(cls).items():
        where = f"{path}.{name}" if path else name
        if name not in value:
            if not _optional(hint):
                missing.append(where)
            continue
        field = value[name]
        item_class = _list_item_class(hint)
        if item_class is not None and isinstance(field, dict):
            for index, item in enumerate(field.get("data", [])):
                missing += missing_required_fields(item_class, item, f"{where}.data[{index}]")
        for nested in _object_classes(hint):
            if isinstance(field, dict):
                missing += missing_required_fields(nested, field, where)
            elif isinstance(field, list):
                for index, item in enumerate(field):
                    missing += missing_required_fields(nested, item, f"{where}[{index}]")
    return missing


def recorded_object(event_file: str) -> dict[str, Any]:
    recorded: dict[str, Any] = json.loads((FIXTURES / "events" / event_file).read_text())
    data_object: dict[str, Any] = recorded["data"]["object"]
    return data_object


def recorded_fields_missing(
    cls: type[StripeObject], recorded: dict[str, Any], value: dict[str, Any]
) -> list[str]:
    """The fields a recorded object of `cls` has, that the SDK still declares, and `value`
    lacks."""
    known = sdk_fields(cls)
    return sorted(name for name in recorded if name in known and name not in value)
