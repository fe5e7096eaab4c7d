"""Stripe list objects: `limit` (1..100, default 10), `starting_after`, `has_more`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .errors import invalid_param
from .forms import Form, optional_int, optional_str

T = TypeVar("T")

DEFAULT_LIMIT = 10
MAX_LIMIT = 100


def list_page(
    items: Sequence[T],
    *,
    query: Form,
    url: str,
    id_of: Callable[[T], str],
    render: Callable[[T], dict[str, Any]],
) -> dict[str, Any]:
    limit = optional_int(query, "limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid_param("limit", f"Invalid limit: must be between 1 and {MAX_LIMIT}.")
    start = 0
    starting_after = optional_str(query, "starting_after")
    if starting_after is not None:
        ids = [id_of(item) for item in items]
        if starting_after not in ids:
            raise invalid_param("starting_after", f"Invalid starting_after id: {starting_after}")
        start = ids.index(starting_after) + 1
    page = items[start : start + limit]
    return {
        "object": "list",
        "data": [render(item) for item in page],
        "has_more": start + limit < len(items),
        "url": url,
    }
