"""Thin events (v2 "event notifications"): what is checked before one is fetched and recorded.

A thin event carries only `id`, `object` ("v2.core.event"), `type`, `created` (RFC 3339),
`livemode`, `context` and, for most types, `related_object` {id, type, url}; the payload is
unversioned and the full event is fetched from `GET /v2/core/events/{id}` (docs:
api/v2/events/event-types, event-destinations). Stripe signs it like any webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from sensor_billing.errors import InvalidEventError
from sensor_billing.webhooks.envelope import MAX_FIELD_LENGTH

THIN_EVENT_OBJECT = "v2.core.event"


class _RelatedObject(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=MAX_FIELD_LENGTH)
    type: str
    url: str


class _ThinEventBody(BaseModel):
    # Stripe may add fields to the unversioned payload; unknown ones are not an error.
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=MAX_FIELD_LENGTH)
    object: Literal["v2.core.event"]
    type: str = Field(min_length=1, max_length=MAX_FIELD_LENGTH)
    created: AwareDatetime
    livemode: bool
    context: str | None = None
    related_object: _RelatedObject | None = None

    @field_validator("created", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        # v2 events give `created` as an RFC 3339 string, never Unix seconds as v1 events do.
        if not isinstance(value, str):
            raise ValueError("must be an RFC 3339 date-time string")
        return value


@dataclass(frozen=True, slots=True)
class ThinEventNotification:
    id: str
    type: str
    created: datetime
    livemode: bool
    context: str | None
    related_object_id: str | None


def is_thin_event(document: Any) -> bool:
    return isinstance(document, dict) and document.get("object") == THIN_EVENT_OBJECT


def parse_thin_event(document: dict[str, Any]) -> ThinEventNotification:
    try:
        body = _ThinEventBody.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidEventError(f"thin event {where}: {first['msg']}") from None
    return ThinEventNotification(
        id=body.id,
        type=body.type,
        created=body.created,
        livemode=body.livemode,
        context=body.context,
        related_object_id=body.related_object.id if body.related_object else None,
    )
