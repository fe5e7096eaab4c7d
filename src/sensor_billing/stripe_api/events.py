"""Fetching a v2 event (the full event behind a thin event notification)."""

from __future__ import annotations

from typing import Any

import stripe

from sensor_billing.errors import EventFetchError
from sensor_billing.stripe_api.meter_events import map_stripe_error


async def fetch_v2_event(
    client: stripe.StripeClient, event_id: str, context: str | None
) -> dict[str, Any]:
    """`GET /v2/core/events/{id}` as plain JSON data; any failure is an `EventFetchError`.

    Sends what the SDK's own `EventNotification.fetch_event_async` sends: the event's
    `context` (a connected account's events are fetched in its context) and the
    `Stripe-Request-Trigger` header. Events are retrievable for 30 days (docs: api/v2/core/events).
    """
    options: stripe.RequestOptions = {"headers": {"Stripe-Request-Trigger": f"event={event_id}"}}
    if context:
        options["stripe_context"] = context
    try:
        event = await client.v2.core.events.retrieve_async(event_id, options=options)
    except stripe.StripeError as error:
        status = "no answer" if error.http_status is None else f"HTTP {error.http_status}"
        raise EventFetchError(
            f"fetching event {event_id} failed ({status}): {map_stripe_error(error)}"
        ) from error
    data: dict[str, Any] = event.to_dict()
    return data
