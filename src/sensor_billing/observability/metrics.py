"""Prometheus metrics: the metric objects and the one-line helpers the hot paths call.

Counters and histograms live in the process's default registry, so the API serves them on
`GET /metrics` and the worker on `WORKER_METRICS_PORT`. Labels stay bounded: outcomes are fixed
sets, event types are Stripe's (a bounded list, and only signed events reach the label), HTTP
statuses are a handful.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final, Literal, TypeAlias

from prometheus_client import Counter, Histogram, start_http_server

from sensor_billing.errors import ConfigurationError, StripeRefusedError, StripeUnavailableError
from sensor_billing.metering.reporter import Verdict

WebhookOutcome: TypeAlias = Literal["processed", "duplicate", "rejected", "failed"]

# A delivery before its event is parsed (rejected) has no type.
NO_EVENT_TYPE: Final = "-"
# A Stripe call that got no HTTP answer (connection error, timeout).
NO_HTTP_STATUS: Final = "none"

WEBHOOK_DELIVERIES = Counter(
    "sensor_billing_webhook_deliveries",
    "Stripe webhook deliveries answered, by outcome and event type.",
    ["outcome", "type"],
)
WEBHOOK_DURATION = Histogram(
    "sensor_billing_webhook_duration_seconds",
    "Time from receiving a Stripe webhook delivery to answering it.",
    ["outcome"],
)
METER_REPORTS = Counter(
    "sensor_billing_meter_reports",
    "meter:report jobs run, by what became of the ledger row.",
    ["outcome"],
)
METER_ERRORS = Counter(
    "sensor_billing_stripe_meter_errors",
    "Meter events Stripe reported invalid after accepting them (thin meter error events "
    "processed), by Stripe's error code.",
    ["code"],
)
LATE_READINGS = Counter(
    "sensor_billing_late_readings",
    "Readings billed by arrival in a later window than the one their received_at falls in: "
    "their transaction committed after that window was closed (counted by the process that "
    "closed the window, the worker).",
)
STALE_RESEND_CHECKS = Counter(
    "sensor_billing_stale_resend_checks",
    "Rows about to be sent more than a day after they could first have been, checked against "
    "Stripe's hourly summary first, by decision: send (Stripe lacks the usage), counted "
    "(marked sent without a call), person (cannot tell: failed, for a person).",
    ["decision"],
)
DUPLICATE_SUBSCRIPTIONS = Counter(
    "sensor_billing_duplicate_subscriptions",
    "customer.subscription.created events for a customer that already had another live "
    "subscription with metered prices (both bill the same meter usage; docs/operations.md).",
)
WEBHOOK_GROUPS = Histogram(
    "sensor_billing_webhook_group_events",
    "Handled webhook events applied together in one transaction (webhooks/groups.py), per "
    "group; a group of one is a delivery applied alone.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 100),
)
WEBHOOK_GROUPS_ROLLED_BACK = Counter(
    "sensor_billing_webhook_groups_rolled_back",
    "Groups of handled webhook events rolled back (a same-second event, two events meeting "
    "in one organization, a failed statement) and then applied one at a time.",
)
STRIPE_REQUEST_DURATION = Histogram(
    "sensor_billing_stripe_request_duration_seconds",
    "Duration of meter event calls to Stripe, answered or not.",
)
STRIPE_ERRORS = Counter(
    "sensor_billing_stripe_errors",
    "Meter event calls Stripe refused or could not take, by HTTP status ('none': no answer).",
    ["status"],
)
API_REQUESTS = Counter(
    "sensor_billing_api_requests",
    "/v1 requests answered, by method, operation (the route's path template; 'unmatched' for "
    "a path no operation has) and HTTP status.",
    ["method", "route", "status"],
)
API_DURATION = Histogram(
    "sensor_billing_api_request_duration_seconds",
    "Time from receiving a /v1 request to the start of its answer, by operation.",
    ["method", "route"],
)


def record_webhook_delivery(outcome: WebhookOutcome, event_type: str, seconds: float) -> None:
    WEBHOOK_DELIVERIES.labels(outcome, event_type).inc()
    WEBHOOK_DURATION.labels(outcome).observe(seconds)


def record_webhook_group(events: int, *, rolled_back: bool) -> None:
    WEBHOOK_GROUPS.observe(events)
    if rolled_back:
        WEBHOOK_GROUPS_ROLLED_BACK.inc()


def record_api_request(method: str, route: str, status: int, seconds: float) -> None:
    API_REQUESTS.labels(method, route, str(status)).inc()
    API_DURATION.labels(method, route).observe(seconds)


def record_meter_report(verdict: Verdict) -> None:
    METER_REPORTS.labels(verdict.value).inc()


def record_late_readings(count: int) -> None:
    LATE_READINGS.inc(count)


def record_stale_check(decision: str) -> None:
    STALE_RESEND_CHECKS.labels(decision).inc()


def record_meter_errors(counts: dict[str, int]) -> None:
    for code, count in counts.items():
        METER_ERRORS.labels(code).inc(count)


def record_duplicate_subscription() -> None:
    DUPLICATE_SUBSCRIPTIONS.inc()


@contextmanager
def timed_stripe_request() -> Iterator[None]:
    """Time one Stripe call; count the errors it raises (as ours) by HTTP status."""
    started = time.perf_counter()
    try:
        yield
    except (StripeUnavailableError, StripeRefusedError) as error:
        status = NO_HTTP_STATUS if error.status is None else str(error.status)
        STRIPE_ERRORS.labels(status).inc()
        raise
    finally:
        STRIPE_REQUEST_DURATION.observe(time.perf_counter() - started)


# Every interface: Prometheus scrapes the worker from another host or container.
ALL_INTERFACES: Final = "0.0.0.0"  # noqa: S104


def serve_metrics(port: int, address: str = ALL_INTERFACES) -> Callable[[], None]:
    """Serve this process's metrics on `port` (a daemon thread); returns the stop function."""
    try:
        server, thread = start_http_server(port, address)
    except OSError as error:
        raise ConfigurationError(
            f"WORKER_METRICS_PORT: cannot serve metrics on {address}:{port} ({error.strerror})"
        ) from None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
