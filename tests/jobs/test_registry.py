"""The jobs registry keeps the seed plan's names, options and data contract."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from sensor_billing.errors import InvalidJobDataError
from sensor_billing.jobs import (
    METER_REPORT_JOB_OPTIONS,
    EntitlementChangedJobData,
    JobNames,
    MeterReportJobData,
    QueueNames,
    SmsNotificationJobData,
    parse_meter_report_data,
)

ORG = "0b6f4a8e-6a8e-4c4a-9f5e-1d2c3b4a5f60"


def test_queue_and_job_names_are_the_seed_plans() -> None:
    assert {name.name: name.value for name in QueueNames} == {
        "SMS_NOTIFICATIONS": "sms-notifications",
        "EMAIL_DIGESTS": "email-digests",
        "METER_REPORTING": "meter-reporting",
        "BILLING_EVENTS": "billing-events",
    }
    assert {name.name: name.value for name in JobNames} == {
        "SMS_SEND": "sms:send",
        "EMAIL_DIGEST": "email:digest",
        "METER_REPORT": "meter:report",
        "ENTITLEMENT_CHANGED": "billing:entitlement-changed",
    }


def test_meter_report_options_are_the_seed_plans() -> None:
    assert METER_REPORT_JOB_OPTIONS == {
        "attempts": 5,
        "backoff": {"type": "exponential", "delay": 5000},
        "removeOnComplete": 200,
        "removeOnFail": 1000,
    }


def test_meter_report_data_travels_with_camel_case_keys() -> None:
    data = parse_meter_report_data(
        {"organizationId": ORG, "eventName": "temperature_readings", "value": 42, "timestamp": 1}
    )
    assert data.organization_id == uuid.UUID(ORG)
    assert data.to_wire() == {
        "organizationId": ORG,
        "eventName": "temperature_readings",
        "value": 42,
        "timestamp": 1,
    }


def test_timestamp_is_optional_and_left_out_of_the_wire_when_absent() -> None:
    data = MeterReportJobData(organization_id=uuid.UUID(ORG), event_name="active_sensors", value=0)
    assert "timestamp" not in data.to_wire()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"eventName": "humidity_readings"}, "eventName"),
        ({"value": -1}, "value"),
        ({"value": 2.5}, "value"),
        ({"value": 3.0}, "value"),
        ({"value": True}, "value"),
        ({"value": "7"}, "value"),
        # Beyond the ledger's BIGINT, or past year 9999: refused when read, not a job that
        # retries against the database (or the date) and fails with no row.
        ({"value": 2**63}, "value"),
        ({"value": -(2**63) - 1, "correction": True}, "value"),
        ({"timestamp": 253_402_300_800}, "timestamp"),
        # 9999-12-31T23:59:59Z itself: its ledger row's window ends a second later, in year
        # 10000, so the job would fail on every attempt with no row, and the sweep would
        # revive it every cool-down forever.
        ({"timestamp": 253_402_300_799}, "timestamp"),
        ({"timestamp": 1700000000.5}, "timestamp"),
        ({"timestamp": "1700000000"}, "timestamp"),
        ({"organizationId": "not-a-uuid"}, "organizationId"),
    ],
)
def test_bad_meter_report_data_is_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    raw = {"organizationId": ORG, "eventName": "active_sensors", "value": 3, **change}
    with pytest.raises(InvalidJobDataError, match=f"{field}:"):
        parse_meter_report_data(raw)


def test_missing_meter_report_field_is_named() -> None:
    with pytest.raises(InvalidJobDataError, match="value: Field required"):
        parse_meter_report_data({"organizationId": ORG, "eventName": "active_sensors"})


def test_sms_job_data_requires_an_e164_number() -> None:
    SmsNotificationJobData.model_validate(
        {"organizationId": ORG, "phoneNumber": "+4915112345678", "message": "Freezer 3 at -5 C"}
    )
    with pytest.raises(ValueError, match="phoneNumber"):
        SmsNotificationJobData.model_validate(
            {"organizationId": ORG, "phoneNumber": "0151 123", "message": "hi"}
        )


def test_entitlement_changed_data_carries_every_key_with_nulls() -> None:
    data = EntitlementChangedJobData(
        organization_id=uuid.UUID(ORG),
        entitled=False,
        reason="past_due_grace_ended",
        until=None,
        event_id=None,
        decided_at=datetime(2026, 12, 8, 9, 30, tzinfo=UTC),
    )
    assert data.to_wire() == {
        "organizationId": ORG,
        "entitled": False,
        "reason": "past_due_grace_ended",
        "until": None,
        "eventId": None,
        "decidedAt": "2026-12-08T09:30:00Z",
    }
