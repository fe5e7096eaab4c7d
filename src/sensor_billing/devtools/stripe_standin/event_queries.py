"""`GET /v1/events`: the snapshot events the stand-in made, filtered as Stripe filters them.

Stripe rules followed (docs: api/events/list; the parameter texts as the SDKs carry them,
e.g. stripe-node types/EventsResource.d.ts): `type` is "a specific event name, or group of
events using * as a wildcard"; `types` is "an array of up to 20 strings containing specific
event names ... You may pass either `type` or `types`, but not both"; `created` bounds when it
was made; `delivery_success=false` keeps "events which are still pending or have failed all
delivery attempts to a webhook endpoint"; newest first.

Assumed where the docs are silent: `*` matches any run of characters, dots included
(`customer.*` takes `customer.subscription.created`); `type` with `types`, or more than 20
`types`, is refused in the stand-in's words.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from stripe.params import EventListParams

from .billing_records import SnapshotEvent
from .errors import invalid_param
from .forms import Form, optional_str, refuse_unmodelled, sub_form
from .pagination import PAGING_PARAMS, created_filter
from .state import StandinState
from .stripe_params import stripe_takes
from .webhook_events import not_yet_delivered

MAX_TYPES = 20
_PARAMS = PAGING_PARAMS | {"type", "types", "created", "delivery_success"}
_STRIPE_TAKES = stripe_takes(EventListParams)


def list_events(state: StandinState, query: Form) -> list[SnapshotEvent]:
    refuse_unmodelled(query, _PARAMS, _STRIPE_TAKES)
    matches_type = _type_filter(query)
    made_in_range = created_filter(query)
    delivery_success = optional_str(query, "delivery_success")
    if delivery_success not in (None, "true", "false"):
        raise invalid_param("delivery_success", f"Invalid boolean: {delivery_success}")
    undelivered = set(not_yet_delivered(state))
    with state.lock:
        events = [
            event
            for event in state.webhook_events.values()
            if matches_type(event.type)
            and made_in_range(event.created)
            and (
                delivery_success is None
                or (event.id in undelivered) == (delivery_success == "false")
            )
        ]
    return events[::-1]


def _type_filter(query: Form) -> Callable[[str], bool]:
    event_type = optional_str(query, "type")
    listed = sub_form(query, "types")
    if event_type is not None and listed is not None:
        raise invalid_param("types", "You may pass either type or types, but not both.")
    if listed is not None:
        names = [name for name in listed.values() if isinstance(name, str)]
        if len(names) > MAX_TYPES:
            raise invalid_param("types", f"types takes at most {MAX_TYPES} event names.")
        return set(names).__contains__
    if event_type is None:
        return lambda name: True
    pattern = re.compile(".*".join(re.escape(part) for part in event_type.split("*")))
    return lambda name: pattern.fullmatch(name) is not None
