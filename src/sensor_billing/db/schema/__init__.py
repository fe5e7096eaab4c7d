"""Every table of the service, re-exported (the seed's `export * from './billing'`)."""

from sensor_billing.db.schema.api import IdempotencyKey, ServiceKey
from sensor_billing.db.schema.base import Base
from sensor_billing.db.schema.billing import (
    BillingStateChange,
    EntitlementNotice,
    NotifiedEntitlement,
    StripeEvent,
    StripeInvoice,
    StripePrice,
    StripeSubscription,
)
from sensor_billing.db.schema.metering import (
    MeterErrorReport,
    MeteringCursor,
    MeterReport,
    ReconcileOutcome,
    ReconciliationRun,
    ReportSource,
    ReportStatus,
    SensorStatusPeriod,
)
from sensor_billing.db.schema.tenancy import Organization, Sensor, SensorStatus, TemperatureReading

__all__ = [
    "Base",
    "BillingStateChange",
    "EntitlementNotice",
    "IdempotencyKey",
    "MeterErrorReport",
    "MeterReport",
    "MeteringCursor",
    "NotifiedEntitlement",
    "Organization",
    "ReconcileOutcome",
    "ReconciliationRun",
    "ReportSource",
    "ReportStatus",
    "Sensor",
    "SensorStatus",
    "SensorStatusPeriod",
    "ServiceKey",
    "StripeEvent",
    "StripeInvoice",
    "StripePrice",
    "StripeSubscription",
    "TemperatureReading",
]
