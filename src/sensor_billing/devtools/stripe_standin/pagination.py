"""Stripe list objects: `limit` (1..100, default 10), `starting_after` / `ending_before`,
`has_more`, and the `created` filter many lists take.

Stripe rules followed (docs: api/pagination): lists are newest first; `starting_after` is "an
object ID that defines your place in the list ... to fetch the next page", `ending_before` the
same "to fetch the previous page"; `created` is a timestamp or a hash of `gt`, `gte`, `lt`,
`lte` (api/events/list, api/subscriptions/list).

Assumed where the docs are silent: `starting_after` and `ending_before` together are refused
(the stand-in's wording); an id not in the list is refused naming the parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .errors import invalid_param
from .forms import Form, optional_int, optional_str

T = TypeVar("T")

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
# What every list takes besides its own filters.
PAGING_PARAMS = frozenset({"limit", "starting_after", "ending_before", "expand"})
_CREATED_BOUNDS: dict[str, Callable[[int, int], bool]] = {
    "gt": lambda created, bound: created > bound,
    "gte": lambda created, bound: created >= bound,
    "lt": lambda created, bound: created < bound,
    "lte": lambda created, bound: created <= bound,
}


def list_page(
    items: Sequence[T],
    *,
    query: Form,
    url: str,
    id_of: Callable[[T], str],
    render: Callable[[T], dict[str, Any]],
    expand: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """A page of `items`; `expand` answers the rendered page with what `expand[]` asked
    (expansion.expand_in_list); a list without it refuses `expand[]`."""
    limit = optional_int(query, "limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid_param("limit", f"Invalid limit: must be between 1 and {MAX_LIMIT}.")
    starting_after = optional_str(query, "starting_after")
    ending_before = optional_str(query, "ending_before")
    if starting_after is not None and ending_before is not None:
        raise invalid_param(
            "ending_before", "Pass starting_after or ending_before, not both (the stand-in)."
        )
    if ending_before is not None:
        end = _position(items, id_of, ending_before, "ending_before")
        start = max(0, end - limit)
        page, has_more = items[start:end], start > 0
    else:
        start = 0
        if starting_after is not None:
            start = _position(items, id_of, starting_after, "starting_after") + 1
        page, has_more = items[start : start + limit], start + limit < len(items)
    data = [render(item) for item in page]
    if expand is not None:
        data = expand(data)
    elif query.get("expand") is not None:
        raise invalid_param("expand", "The Stripe stand-in does not expand this list.")
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "url": url,
    }


def _position(items: Sequence[T], id_of: Callable[[T], str], cursor: str, param: str) -> int:
    ids = [id_of(item) for item in items]
    if cursor not in ids:
        raise invalid_param(param, f"Invalid {param} id: {cursor}")
    return ids.index(cursor)


def created_filter(query: Form) -> Callable[[int], bool]:
    """`created=<unix>` or `created[gt|gte|lt|lte]=<unix>` as a test on a `created` value."""
    raw = query.get("created")
    if raw is None:
        return lambda created: True
    if isinstance(raw, str):
        exact = optional_int(query, "created")
        return lambda created: created == exact
    bounds = []
    for name in raw:
        test = _CREATED_BOUNDS.get(name)
        if test is None:
            raise invalid_param(
                f"created[{name}]",
                f"Received unknown parameter: created[{name}]",
                code="parameter_unknown",
            )
        bounds.append((test, optional_int(raw, name, param=f"created[{name}]")))
    return lambda created: all(test(created, bound) for test, bound in bounds if bound is not None)
