"""The Stripe Event envelope: what is checked before an event is recorded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sensor_billing.billing.stripe_objects import from_unix
from sensor_billing.errors import InvalidEventError

# `stripe_events.event_id` and `.event_type` are varchar(256).
MAX_FIELD_LENGTH = 256


@dataclass(frozen=True, slots=True)
class StripeEventEnvelope:
    id: str
    type: str
    created: datetime
    api_version: str | None
    livemode: bool
    object: dict[str, Any]
    # `object` was fetched from Stripe after the event (webhooks.service): what is true now.
    object_is_current: bool = False


def load_body(body: bytes) -> Any:
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidEventError(f"body is not JSON ({error.__class__.__name__})") from None
    except RecursionError:
        # A small body can nest deeper than the parser recurses ("[[[[...").
        raise InvalidEventError("body is not JSON this service reads: nested too deeply") from None
    if b"\\u0000" in body and _holds_nul(event):
        # PostgreSQL text cannot store U+0000, and no Stripe object carries one.
        raise InvalidEventError("body holds a NUL character (\\u0000)")
    return event


def parse_event(body: bytes) -> StripeEventEnvelope:
    return read_event(load_body(body))


def read_event(event: Any) -> StripeEventEnvelope:
    """A snapshot event (`"object": "event"`), parsed from the delivery's JSON."""
    if not isinstance(event, dict) or event.get("object") != "event":
        raise InvalidEventError('body is not a Stripe event (expected "object": "event")')
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_FIELD_LENGTH:
        raise InvalidEventError("event id must be a string of 1 to 256 characters")
    if not isinstance(event_type, str) or not 0 < len(event_type) <= MAX_FIELD_LENGTH:
        raise InvalidEventError("event type must be a string of 1 to 256 characters")
    created_at = from_unix(created)  # an int from 0 to the end of year 9999, not a bool
    if created_at is None:
        raise InvalidEventError("event created must be a Unix timestamp")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise InvalidEventError("event data.object must be an object")
    api_version = event.get("api_version")
    return StripeEventEnvelope(
        id=event_id,
        type=event_type,
        created=created_at,
        api_version=api_version if isinstance(api_version, str) else None,
        livemode=bool(event.get("livemode")),
        object=data["object"],
    )


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False
