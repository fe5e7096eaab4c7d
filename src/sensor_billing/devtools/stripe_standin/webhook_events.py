"""v1 snapshot events: made when an object changes, sent signed to the webhook endpoints.

Stripe rules followed (docs: webhooks, api/events/object):
- an event's `data.object` is the object's full state when the event was made, and
  `data.previous_attributes` holds "the names of the updated attributes and their values prior
  to the event (only included in events of type *.updated). If an array attribute has any
  updated elements, this object contains the entire array" (api/events/object); Stripe's
  recorded events show hashes diffed key by key, a key added shown as null
  (`{"metadata": {"test": null}}`, tests/fixtures/stripe/events/supabase-sync__customer.
  subscription.updated__*; `{"invoice_settings": {"default_payment_method": null}}`,
  zulip__customer.updated__*), and no `previous_attributes` on `*.deleted`;
  `created` has one-second resolution, so two events of one object can share it;
- an event is sent to the endpoints that exist, and take its type (`enabled_events`, `*` for
  all), when it is made; each attempt is a POST of the event, signed like every webhook
  (`destinations.post_signed`), and anything but a 2xx is a failure Stripe retries;
- Stripe does not order deliveries, and can deliver one event more than once;
- `request` names the API request that caused the event and "the idempotency key transmitted
  during the request, if any"; "if null, the event was automatic (e.g., Stripe's automatic
  subscription handling)" (api/events/object, `request.id`): events made by the control API
  (a customer paying, a renewal, time passing) name none.

Assumed where the docs are silent: events made by API calls (an update, a cancel) are sent once,
in the background, after the call answered; events made by the control API are sent before its
answer unless it asks otherwise, so a test knows they arrived. Failed attempts are kept and
`POST /_standin/webhook_deliveries` sends again (Stripe's retries, made when the test says);
`POST /_standin/webhook_deliveries/settle` waits for the background sends to finish.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from .billing_records import SnapshotEvent
from .destinations import DELIVERY_TIMEOUT_SECONDS, post_signed
from .records import EventDelivery, new_id
from .state import StandinState

# The API call being served, while its work runs: (Request-Id, Idempotency-Key).
_caller: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "stripe_standin_caller", default=(None, None)
)


@contextmanager
def caused_by(request_id: str | None, idempotency_key: str | None) -> Iterator[None]:
    """Events made inside name this API request as their cause."""
    token = _caller.set((request_id, idempotency_key))
    try:
        yield
    finally:
        _caller.reset(token)


def emit(
    state: StandinState,
    event_type: str,
    data_object: Mapping[str, Any],
    before: Mapping[str, Any] | None = None,
    *,
    created: int | None = None,
) -> SnapshotEvent:
    """Make the event for `data_object` as it is now and put it in the outbox. `before`, the
    object's earlier rendering, gives a `*.updated` event its `previous_attributes`; `created`
    defaults to now. Call with `state.lock` held."""
    previous = None
    if before is not None and event_type.endswith(".updated"):
        previous = previous_attributes(before, data_object)
    event = SnapshotEvent(
        id=new_id("evt_", 24),
        type=event_type,
        created=int(state.clock.now()) if created is None else created,
        data_object=copy.deepcopy(dict(data_object)),
        previous_attributes=previous,
        request=_caller.get(),
        endpoint_ids=tuple(
            endpoint.id
            for endpoint in state.webhook_endpoints.values()
            if endpoint.takes(event_type)
        ),
    )
    state.webhook_events[event.id] = event
    state.webhook_outbox.append(event.id)
    return event


def previous_attributes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The keys whose value changed, with their earlier value (None where the key is new):
    hashes on both sides key by key, anything else (arrays included) whole."""
    changed: dict[str, Any] = {}
    for key in [*after, *(key for key in before if key not in after)]:
        old, new = before.get(key), after.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            inner = previous_attributes(old, new)
            if inner:
                changed[key] = inner
        elif old != new:
            changed[key] = copy.deepcopy(old)
    return changed


def take_outbox(state: StandinState) -> list[str]:
    """The events made since the last take, oldest first: the caller sends them (or not)."""
    with state.lock:
        event_ids, state.webhook_outbox = state.webhook_outbox, []
        return event_ids


def send_outbox_in_background(state: StandinState) -> None:
    """After an API call: its events follow its answer, as Stripe's webhooks do."""
    deliver_in_background(state, take_outbox(state))


async def deliver(
    state: StandinState, event_ids: Iterable[str], *, only_undelivered: bool = False
) -> list[EventDelivery]:
    """Send each event, in the order given, to each of its endpoints that still exists (with
    `only_undelivered`, to those that have not answered it 2xx yet)."""
    with state.lock:
        delivered = state.delivered_pairs() if only_undelivered else set()
        plan = [
            (event, state.webhook_endpoints[endpoint_id])
            for event in (state.webhook_events[event_id] for event_id in event_ids)
            for endpoint_id in event.endpoint_ids
            if endpoint_id in state.webhook_endpoints and (event.id, endpoint_id) not in delivered
        ]
    attempts = []
    async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS) as client:
        for event, endpoint in plan:
            status, error = await post_signed(
                client, endpoint.url, endpoint.secret, render(state, event)
            )
            attempt = EventDelivery(event.id, state.clock.now(), status, error, endpoint.id)
            with state.lock:
                state.webhook_deliveries.append(attempt)
            attempts.append(attempt)
    return attempts


def deliver_in_background(state: StandinState, event_ids: list[str]) -> None:
    """Send after the current answer, as Stripe's webhooks follow the API call that caused
    them. Call from the stand-in's event loop."""
    if not event_ids:
        return
    task = asyncio.get_running_loop().create_task(_deliver_quietly(state, event_ids))
    state.webhook_tasks.add(task)
    task.add_done_callback(state.webhook_tasks.discard)


async def _deliver_quietly(state: StandinState, event_ids: list[str]) -> None:
    await deliver(state, event_ids)


async def settle(state: StandinState) -> None:
    """Wait until every background send has finished."""
    while state.webhook_tasks:
        await asyncio.gather(*list(state.webhook_tasks), return_exceptions=True)


def render(state: StandinState, event: SnapshotEvent) -> dict[str, Any]:
    """The event as the API answers it and as a delivery sends it, counted now."""
    return event.to_stripe(state.pending_webhooks(event))


def not_yet_delivered(state: StandinState) -> list[str]:
    """Events that some endpoint of theirs has not answered 2xx, oldest first."""
    with state.lock:
        delivered = state.delivered_pairs()
        return [
            event.id
            for event in state.webhook_events.values()
            if any(
                (event.id, endpoint_id) not in delivered
                for endpoint_id in event.endpoint_ids
                if endpoint_id in state.webhook_endpoints
            )
        ]
