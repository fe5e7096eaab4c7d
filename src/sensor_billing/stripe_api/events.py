"""Fetching what a webhook delivery needs from Stripe: the full v2 event behind a thin event
notification, and the subscription of a snapshot event that cannot be ordered by its `created`."""

from __future__ import annotations

from typing import Any

import stripe

from sensor_billing.errors import EventFetchError
from sensor_billing.stripe_api.meter_events import map_stripe_error


def _fetch_failed(what: str, error: stripe.StripeError) -> EventFetchError:
    status = "no answer" if error.http_status is None else f"HTTP {error.http_status}"
    return EventFetchError(f"fetching {what} failed ({status}): {map_stripe_error(error)}")


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
        raise _fetch_failed(f"event {event_id}", error) from error
    data: dict[str, Any] = event.to_dict()
    return data


async def fetch_subscription(client: stripe.StripeClient, subscription_id: str) -> dict[str, Any]:
    """`GET /v1/subscriptions/{id}` as the JSON an event's `data.object` holds (decimals as
    strings, `for_json`); any failure, or an answer that is not that subscription, is an
    `EventFetchError`. A canceled subscription is still retrievable by its id (docs:
    changelog/2016-07-06/filter-canceled-subscriptions-retrieve-individually)."""
    try:
        subscription = await client.v1.subscriptions.retrieve_async(subscription_id)
    except stripe.StripeError as error:
        raise _fetch_failed(f"subscription {subscription_id}", error) from error
    data: dict[str, Any] = subscription.to_dict(for_json=True)
    if data.get("object") != "subscription" or data.get("id") != subscription_id:
        raise EventFetchError(
            f"fetching subscription {subscription_id} answered something else"
            f" ({data.get('object')!r} {data.get('id')!r})"
        )
    return data
