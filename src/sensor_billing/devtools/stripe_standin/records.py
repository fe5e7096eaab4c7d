"""What the stand-in stores: meters, customers, meter events, error reports, v2 events, sessions."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

Via = Literal["v1", "v2"]
Formula = Literal["sum", "count", "last"]

_ID_ALPHABET = string.ascii_letters + string.digits
# Random bytes to id characters in one `bytes.translate`: a character per byte, instead of a
# `secrets.choice` (an os.urandom call) per character, which was a fifth of the stand-in's CPU
# per meter event call. Ids need to be unique, not evenly spread: the slight lean towards the
# first 256 % 62 characters costs nothing.
_BYTE_TO_ID_CHARACTER = bytes(ord(_ID_ALPHABET[byte % len(_ID_ALPHABET)]) for byte in range(256))


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + secrets.token_bytes(length).translate(_BYTE_TO_ID_CHARACTER).decode("ascii")


def json_number(value: Decimal) -> int | float:
    """A quantity as Stripe's JSON shows it: a whole number as an integer."""
    return int(value) if value == value.to_integral_value() else float(value)


def rfc3339(unix_seconds: float) -> str:
    moment = datetime.fromtimestamp(unix_seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ErrorCode(StrEnum):
    """Asynchronous validation failures (STRIPE.md, "A 2xx means accepted, not recorded")."""

    NO_METER = "no_meter"
    ARCHIVED_METER = "archived_meter"
    CUSTOMER_NOT_FOUND = "meter_event_customer_not_found"
    NO_CUSTOMER_DEFINED = "meter_event_no_customer_defined"
    VALUE_NOT_FOUND = "meter_event_value_not_found"
    INVALID_VALUE = "meter_event_invalid_value"
    TIMESTAMP_TOO_FAR_IN_PAST = "timestamp_too_far_in_past"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"

    @property
    def thin_event_type(self) -> str:
        # The meter-error thin events: a missing meter has its own type, the rest are reports.
        if self is ErrorCode.NO_METER:
            return "v1.billing.meter.no_meter_found"
        return "v1.billing.meter.error_report_triggered"


@dataclass
class Meter:
    id: str
    display_name: str
    event_name: str
    formula: Formula
    customer_key: str
    value_key: str
    event_time_window: str | None
    created: int
    status: Literal["active", "inactive"] = "active"
    deactivated_at: int | None = None
    updated: int = 0

    def to_stripe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "billing.meter",
            "created": self.created,
            "customer_mapping": {"event_payload_key": self.customer_key, "type": "by_id"},
            "default_aggregation": {"formula": self.formula},
            "display_name": self.display_name,
            "event_name": self.event_name,
            "event_time_window": self.event_time_window,
            "livemode": False,
            "status": self.status,
            "status_transitions": {"deactivated_at": self.deactivated_at},
            "updated": self.updated or self.created,
            "value_settings": {"event_payload_key": self.value_key},
        }


@dataclass
class Customer:
    id: str
    created: int
    name: str | None = None
    email: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    deleted: bool = False

    def to_stripe(self) -> dict[str, Any]:
        if self.deleted:
            # Stripe keeps answering for a deleted customer with this stub.
            return {"id": self.id, "object": "customer", "deleted": True}
        return {
            "id": self.id,
            "object": "customer",
            "balance": 0,
            "created": self.created,
            "currency": None,
            "delinquent": False,
            "description": None,
            "email": self.email,
            "livemode": False,
            "metadata": dict(self.metadata),
            "name": self.name,
        }


@dataclass
class MeterEventRecord:
    """An accepted meter event. It counts in summaries only if valid and not cancelled."""

    sequence: int
    identifier: str
    event_name: str
    payload: dict[str, str]
    timestamp: int
    created: float
    via: Via
    idempotency_key: str | None
    request_id: str | None
    customer: str | None
    value: str | None
    meter_id: str | None = None
    error_code: ErrorCode | None = None
    cancelled: bool = False

    @property
    def counts(self) -> bool:
        return self.error_code is None and not self.cancelled

    @property
    def numeric_value(self) -> Decimal:
        return Decimal(self.value) if self.value is not None else Decimal(0)

    def to_stripe(self) -> dict[str, Any]:
        return {
            "object": "billing.meter_event",
            "created": int(self.created),
            "event_name": self.event_name,
            "identifier": self.identifier,
            "livemode": False,
            "payload": dict(self.payload),
            "timestamp": self.timestamp,
        }

    def to_control(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "event_name": self.event_name,
            "customer": self.customer,
            "value": self.value,
            "timestamp": self.timestamp,
            "created": int(self.created),
            "via": self.via,
            "idempotency_key": self.idempotency_key,
            "request_id": self.request_id,
            "meter": self.meter_id,
            "error_code": None if self.error_code is None else str(self.error_code),
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True)
class ErrorReport:
    """An accepted event that failed Stripe's asynchronous validation."""

    id: str
    code: ErrorCode
    message: str
    created: int
    event_identifier: str
    event_name: str
    customer: str | None
    meter_id: str | None
    via: Via

    @property
    def thin_event_type(self) -> str:
        return self.code.thin_event_type

    def to_control(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "code": str(self.code),
            "message": self.message,
            "thin_event_type": self.thin_event_type,
            "created": self.created,
            "event_identifier": self.event_identifier,
            "event_name": self.event_name,
            "customer": self.customer,
            "meter": self.meter_id,
            "via": self.via,
        }


@dataclass(frozen=True)
class V2Event:
    """The v2 event (thin event) that reports one error report.

    Shape from the docs' Event object (api/v2/core/events/object): the thin notification holds
    id, object, type, created (RFC 3339), livemode, context and related_object; the full event
    adds `reason` and `data`. `no_meter_found` names no meter, so it has no related object.
    Stripe batches a validation window's errors into one event; the stand-in sends one event per
    invalid meter event (error_count 1, the event itself as the one sample), validated over the
    second it was accepted in.
    """

    id: str
    report: ErrorReport

    @property
    def type(self) -> str:
        return self.report.thin_event_type

    def to_notification(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "v2.core.event",
            "type": self.type,
            "created": rfc3339(self.report.created),
            "livemode": False,
            "context": None,
        }
        if self.report.meter_id is not None and self.report.code is not ErrorCode.NO_METER:
            body["related_object"] = {
                "id": self.report.meter_id,
                "type": "billing.meter",
                "url": f"/v1/billing/meters/{self.report.meter_id}",
            }
        return body

    def to_stripe(self) -> dict[str, Any]:
        return {
            **self.to_notification(),
            "reason": None,
            "data": {
                "developer_message_summary": "There is 1 invalid event",
                "reason": {
                    "error_count": 1,
                    "error_types": [
                        {
                            "code": str(self.report.code),
                            "error_count": 1,
                            "sample_errors": [
                                {
                                    "error_message": self.report.message,
                                    "request": {"identifier": self.report.event_identifier},
                                }
                            ],
                        }
                    ],
                },
                "validation_start": rfc3339(self.report.created),
                "validation_end": rfc3339(self.report.created + 1),
            },
        }


@dataclass(frozen=True)
class EventDelivery:
    """One attempt to deliver an event: a v2 thin event to the event destination, or a v1
    snapshot event to the webhook endpoint `endpoint`."""

    event_id: str
    at: float
    status: int | None  # None: no HTTP answer
    error: str | None = None
    endpoint: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def to_control(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "at": self.at,
            "status": self.status,
            "error": self.error,
            "succeeded": self.succeeded,
            "endpoint": self.endpoint,
        }


@dataclass(frozen=True)
class MeterEventSession:
    id: str
    authentication_token: str
    created: float
    expires_at: float

    def to_stripe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "v2.billing.meter_event_session",
            "authentication_token": self.authentication_token,
            "created": rfc3339(self.created),
            "expires_at": rfc3339(self.expires_at),
            "livemode": False,
        }


@dataclass
class Counters:
    duplicates_refused: int = 0
    duplicates_deduplicated: int = 0
    rate_limited: int = 0
    idempotent_replays: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)

    def to_control(self) -> dict[str, Any]:
        return {
            "duplicates_refused": self.duplicates_refused,
            "duplicates_deduplicated": self.duplicates_deduplicated,
            "rate_limited": self.rate_limited,
            "idempotent_replays": self.idempotent_replays,
            "faults_injected": dict(self.faults_injected),
        }


@dataclass
class Product:
    id: str
    name: str
    created: int
    description: str | None = None
    active: bool = True
    metadata: dict[str, str] = field(default_factory=dict)

    def to_stripe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "product",
            "active": self.active,
            "created": self.created,
            "default_price": None,
            "description": self.description,
            "livemode": False,
            "metadata": dict(self.metadata),
            "name": self.name,
            "type": "service",
            "updated": self.created,
        }


@dataclass
class Price:
    """A recurring price. `unit_amount_decimal` is in the currency's minor unit (cents)."""

    id: str
    product: str
    currency: str
    unit_amount_decimal: Decimal
    interval: str
    interval_count: int
    usage_type: Literal["licensed", "metered"]
    meter: str | None
    created: int
    lookup_key: str | None = None
    nickname: str | None = None
    active: bool = True
    metadata: dict[str, str] = field(default_factory=dict)

    def to_stripe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "price",
            "active": self.active,
            "billing_scheme": "per_unit",
            "created": self.created,
            "currency": self.currency,
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": self.lookup_key,
            "metadata": dict(self.metadata),
            "nickname": self.nickname,
            "product": self.product,
            "recurring": {
                "interval": self.interval,
                "interval_count": self.interval_count,
                "meter": self.meter,
                "trial_period_days": None,
                "usage_type": self.usage_type,
            },
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring",
            "unit_amount": self._whole_amount(),
            "unit_amount_decimal": format(self.unit_amount_decimal, "f"),
        }

    def to_plan(self) -> dict[str, Any]:
        """The price in the legacy Plan shape a subscription item still carries; basil removed
        `aggregate_usage` (meters aggregate) (docs: api/plans/object)."""
        return {
            "id": self.id,
            "object": "plan",
            "active": self.active,
            "amount": self._whole_amount(),
            "amount_decimal": format(self.unit_amount_decimal, "f"),
            "billing_scheme": "per_unit",
            "created": self.created,
            "currency": self.currency,
            "interval": self.interval,
            "interval_count": self.interval_count,
            "livemode": False,
            "metadata": dict(self.metadata),
            "meter": self.meter,
            "nickname": self.nickname,
            "product": self.product,
            "tiers_mode": None,
            "transform_usage": None,
            "trial_period_days": None,
            "usage_type": self.usage_type,
        }

    def _whole_amount(self) -> int | None:
        # Stripe answers `unit_amount: null` when the amount has a fractional part.
        whole = self.unit_amount_decimal == self.unit_amount_decimal.to_integral_value()
        return int(self.unit_amount_decimal) if whole else None
