"""Stripe's asynchronous verdict on meter events, applied to the ledger.

A 2xx from the meter event endpoints means "accepted", not "recorded": Stripe validates later
and reports failures as thin events `v1.billing.meter.error_report_triggered` and
`v1.billing.meter.no_meter_found` (STRIPE.md). The full event (`GET /v2/core/events/{id}`,
docs: api/v2/core/events/object) carries, in `data`:

    developer_message_summary   "There is 1 invalid event"
    reason.error_count          invalid events in the validation window
    reason.error_types[]        per `code`: `error_count` and `sample_errors[]`, each with
                                `error_message` and `request.identifier`
    validation_start/_end       RFC 3339 bounds of the window Stripe validated

Assumed where the documentation is thin:
- `sample_errors[].request.identifier` is the meter event's `identifier` (the docs' example
  shows a bare UUID, as an identifier would be); the SDK's docstring calls it "the request
  idempotency key", so a value of the form of our idempotency keys (`meter-event-<identifier>`,
  `...retry<n>` from the second attempt on) is matched too.
- Only sampled errors name an event: a row Stripe did not sample cannot be marked. Its error is
  still counted, in a report row without an organization.
- `no_meter_found` has no `related_object` (the SDK's notification class has none).
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.billing.service import Effect, Result
from sensor_billing.errors import EventFetchError
from sensor_billing.metering import meter_errors_repository as repository
from sensor_billing.stripe_api.meter_events import identifier_of_idempotency_key

ERROR_REPORT_TRIGGERED: Final = "v1.billing.meter.error_report_triggered"
NO_METER_FOUND: Final = "v1.billing.meter.no_meter_found"
METER_ERROR_EVENT_TYPES: Final = frozenset({ERROR_REPORT_TRIGGERED, NO_METER_FOUND})

# Stripe's error codes are short snake_case words; the column is varchar(64).
MAX_CODE_LENGTH = 64


class _StripeShape(BaseModel):
    # Stripe adds fields without a version change to thin-event payloads (docs: event-types).
    model_config = ConfigDict(extra="ignore", frozen=True)


class SampleRequest(_StripeShape):
    identifier: str = Field(min_length=1, max_length=255)


class SampleError(_StripeShape):
    error_message: str | None = None
    request: SampleRequest | None = None


class ErrorType(_StripeShape):
    code: str = Field(min_length=1, max_length=MAX_CODE_LENGTH)
    error_count: int = Field(ge=0)
    sample_errors: list[SampleError] = Field(default_factory=list)


class ErrorReason(_StripeShape):
    error_count: int = Field(ge=0)
    error_types: list[ErrorType]


class MeterErrorData(_StripeShape):
    developer_message_summary: str | None = None
    reason: ErrorReason
    validation_start: AwareDatetime | None = None
    validation_end: AwareDatetime | None = None


class RelatedObject(_StripeShape):
    id: str = Field(min_length=1, max_length=255)
    type: str
    url: str


class MeterErrorEvent(_StripeShape):
    """A fetched `v2.core.event` of one of the two meter error types."""

    id: str
    object: Literal["v2.core.event"]
    type: str
    created: AwareDatetime
    livemode: bool = False
    related_object: RelatedObject | None = None
    data: MeterErrorData


def read_meter_error_event(
    document: dict[str, Any], *, event_id: str, event_type: str
) -> MeterErrorEvent:
    """The fetched event, checked against Stripe's documented shape and the notification.

    A mismatch is an `EventFetchError`: answered 5xx and recorded nowhere, so the delivery is
    retried and a person sees it in the logs, rather than an error report silently dropped.
    """
    try:
        event = MeterErrorEvent.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "event"
        raise EventFetchError(
            f"event {event_id} is not a documented meter error event: {where}: {first['msg']}"
        ) from None
    if (event.id, event.type) != (event_id, event_type):
        raise EventFetchError(
            f"fetched event {event.id} ({event.type}) is not the notified {event_id} ({event_type})"
        )
    return event


def sampled_identifiers(error_type: ErrorType) -> set[str]:
    """Ledger identifiers the samples may name: as sent, or inside our idempotency key."""
    names: set[str] = set()
    for sample in error_type.sample_errors:
        if sample.request is None:
            continue
        names.add(sample.request.identifier)
        names.add(identifier_of_idempotency_key(sample.request.identifier))
    return names


def _first_message(error_type: ErrorType) -> str | None:
    return next((s.error_message for s in error_type.sample_errors if s.error_message), None)


async def apply_meter_error_event(session: AsyncSession, event: MeterErrorEvent) -> Result:
    """Mark the sampled ledger rows with Stripe's code and record the report per organization.

    Runs once per event: the caller records the event in `stripe_events` in this transaction.
    """
    marked = 0
    reports: list[dict[str, Any]] = []
    for error_type in event.data.reason.error_types:
        message = _first_message(error_type)
        named = await repository.reports_named(session, sampled_identifiers(error_type))
        if named:
            marked += await repository.mark_stripe_error(
                session,
                [report_id for report_id, _ in named],
                code=error_type.code,
                message=message or event.data.developer_message_summary,
                at=event.created,
                event_id=event.id,
            )
        per_organization: Counter[uuid.UUID | None] = Counter(org for _, org in named)
        unsampled = error_type.error_count - sum(per_organization.values())
        if unsampled > 0 or not per_organization:
            per_organization[None] += max(unsampled, 0)
        reports.extend(
            {
                "stripe_event_id": event.id,
                "event_type": event.type,
                "code": error_type.code,
                "error_count": count,
                "organization_id": organization_id,
                "meter_id": event.related_object.id if event.related_object else None,
                "sample_message": message,
                "summary": event.data.developer_message_summary,
                "validation_start": event.data.validation_start,
                "validation_end": event.data.validation_end,
                "event_created_at": event.created,
            }
            for organization_id, count in per_organization.items()
        )
    await repository.add_error_reports(session, reports)
    return Result(
        Effect.APPLIED,
        f"{event.data.reason.error_count} invalid meter event(s) reported; "
        f"{marked} ledger row(s) marked",
    )


def error_counts(event: MeterErrorEvent) -> dict[str, int]:
    """Invalid events per Stripe error code, for the metrics."""
    counts: Counter[str] = Counter()
    for error_type in event.data.reason.error_types:
        counts[error_type.code] += error_type.error_count
    return dict(counts)
