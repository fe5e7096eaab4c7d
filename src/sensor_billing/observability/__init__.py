"""Observability: Prometheus metrics (`GET /metrics`, the worker's metrics port)."""

from sensor_billing.observability.metrics import (
    record_late_readings,
    record_meter_report,
    record_webhook_delivery,
    serve_metrics,
    timed_stripe_request,
)
from sensor_billing.observability.scrape import render_metrics

__all__ = [
    "record_late_readings",
    "record_meter_report",
    "record_webhook_delivery",
    "render_metrics",
    "serve_metrics",
    "timed_stripe_request",
]
