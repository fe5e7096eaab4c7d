"""The jobs registry: queue and job names, job data models, job options, enqueue helpers."""

from sensor_billing.jobs.meter_reports import (
    MeterReportJob,
    enqueue_meter_report,
    parse_meter_report_data,
)
from sensor_billing.jobs.registry import (
    ENTITLEMENT_CHANGED_JOB_OPTIONS,
    METER_EVENT_NAMES,
    METER_REPORT_JOB_OPTIONS,
    BaseJobData,
    EmailDigestJobData,
    EntitlementChangedJobData,
    JobNames,
    MeterEventName,
    MeterReportJobData,
    QueueNames,
    SmsNotificationJobData,
)

__all__ = [
    "ENTITLEMENT_CHANGED_JOB_OPTIONS",
    "METER_EVENT_NAMES",
    "METER_REPORT_JOB_OPTIONS",
    "BaseJobData",
    "EmailDigestJobData",
    "EntitlementChangedJobData",
    "JobNames",
    "MeterEventName",
    "MeterReportJob",
    "MeterReportJobData",
    "QueueNames",
    "SmsNotificationJobData",
    "enqueue_meter_report",
    "parse_meter_report_data",
]
