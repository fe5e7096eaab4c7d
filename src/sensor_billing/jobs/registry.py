"""Queue and job names, job data and job options: the seed plan's jobs registry in Python.

Job data travels as JSON with the TypeScript original's camelCase keys, so a Node BullMQ producer
and this service's Python worker can share a queue.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel


class QueueNames(enum.StrEnum):
    SMS_NOTIFICATIONS = "sms-notifications"
    EMAIL_DIGESTS = "email-digests"
    METER_REPORTING = "meter-reporting"
    # What the product hears from billing (docs/billing.md "The billing-events queue"); this
    # service only adds to it, the product's Node BullMQ worker consumes it.
    BILLING_EVENTS = "billing-events"


class JobNames(enum.StrEnum):
    SMS_SEND = "sms:send"
    EMAIL_DIGEST = "email:digest"
    METER_REPORT = "meter:report"
    ENTITLEMENT_CHANGED = "billing:entitlement-changed"


# The ledger keeps values in a PostgreSQL BIGINT column.
BIGINT_MAX: Final = 2**63 - 1
# 9999-12-31T23:59:58Z: a job's ledger row is the one second from its timestamp, so its end,
# a second later, must still be a date (9999-12-31T23:59:59Z is the last one a date holds).
LAST_TIMESTAMP: Final = 253_402_300_798

MeterEventName: TypeAlias = Literal["active_sensors", "temperature_readings"]
METER_EVENT_NAMES: Final[tuple[MeterEventName, ...]] = ("active_sensors", "temperature_readings")


class BaseJobData(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )

    organization_id: uuid.UUID

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict a bullmq job carries (camelCase keys, no unset options)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SmsNotificationJobData(BaseJobData):
    # E.164, the format SMS gateways take.
    phone_number: Annotated[str, Field(pattern=r"^\+[1-9]\d{6,14}$")]
    message: Annotated[str, Field(min_length=1, max_length=1600)]


class EmailDigestJobData(BaseJobData):
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
    period: Literal["daily", "weekly"] = "daily"


class MeterReportJobData(BaseJobData):
    """One usage report for one Stripe Billing Meter of one organization."""

    # 'active_sensors' is a gauge (meter aggregation `last`); 'temperature_readings' a counter
    # (aggregation `sum`).
    event_name: MeterEventName
    # A ledger correction (`usage correct`). Only a correction may carry a negative value: a
    # compensating event that lowers a sum (Stripe allows negative values for corrections,
    # STRIPE.md). Declared before `value`, which is checked against it; unset on the wire.
    correction: StrictBool | None = None
    # Strict: a bool or 2.5 must not become 1 or 2 on an invoice. Whole numbers only, and
    # not negative unless `corrects` is set.
    value: Annotated[StrictInt, Field(ge=-BIGINT_MAX - 1, le=BIGINT_MAX)]
    # Unix seconds, for historical reporting (Stripe accepts up to 35 days back).
    timestamp: Annotated[StrictInt, Field(ge=0, le=LAST_TIMESTAMP)] | None = None

    @field_validator("value")
    @classmethod
    def _negative_only_for_corrections(cls, value: int, info: ValidationInfo) -> int:
        if value < 0 and not info.data.get("correction"):
            raise ValueError("must be at least 0 (negative only for a correction)")
        return value


class EntitlementChangedJobData(BaseJobData):
    """An organization's entitlement changed (`billing/entitlement.py` is the policy).

    Every key is on the wire, `until` and `eventId` as null when unset: the consumer reads one
    shape. A consumer may receive a notice more than once (a sweep re-adding a job whose
    commit it could not see) and, across jobs, out of order: it applies one only if its
    `decidedAt` is newer than the last it applied for the organization.
    """

    entitled: StrictBool
    reason: Annotated[str, Field(min_length=1, max_length=64)]
    # The entitlement ends then unless something changes (a grace period's end, a period's end
    # for a subscription set to cancel); None when open-ended or not entitled.
    until: datetime | None
    # The webhook event that made the change; None when time made it (a grace period ended).
    event_id: str | None
    decided_at: datetime

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# Stripe meter events are idempotent by identifier, so retrying is safe; five attempts with
# exponential backoff from 5 s (5, 10, 20, 40 s) ride out a short Stripe or network hiccup.
# Failed jobs are kept longer than completed ones: they are what a person debugs.
METER_REPORT_JOB_OPTIONS: Final[dict[str, Any]] = {
    "attempts": 5,
    "backoff": {"type": "exponential", "delay": 5000},
    "removeOnComplete": 200,
    "removeOnFail": 1000,
}


# The consumer's own processing (the product updating its copy) may fail for a while: ten
# attempts from 2 s (the last about 17 minutes after the first). Completed jobs are kept for a
# day (up to 10,000) so that the id of one just consumed still dedupes a sweep's re-add of it;
# failed ones for 30 days, for a person.
ENTITLEMENT_CHANGED_JOB_OPTIONS: Final[dict[str, Any]] = {
    "attempts": 10,
    "backoff": {"type": "exponential", "delay": 2000},
    "removeOnComplete": {"age": 24 * 3600, "count": 10_000},
    "removeOnFail": {"age": 30 * 24 * 3600},
}
