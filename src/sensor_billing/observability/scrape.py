"""What `GET /metrics` answers: the process's metrics plus backlog gauges read at scrape time.

The gauges come from PostgreSQL and Redis with async queries under a short timeout, since the
API's database driver is async and a custom prometheus Collector's `collect()` is not. A source
that does not answer in time leaves its gauges out of that scrape and shows
`sensor_billing_backlog_source_up{source=...} 0`, so an alert on the backlog never sees a
stale number.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.metering.daily_checks_repository import RunSummary
from sensor_billing.metering.repository import LedgerBacklog
from sensor_billing.observability.repository import (
    latest_reconciliation,
    ledger_backlog,
    ledger_stripe_errors,
    queue_depth,
)

logger = logging.getLogger("sensor_billing.metrics")

# Prometheus scrapes time out after 10 s by default; both sources are asked at once.
SOURCE_TIMEOUT_SECONDS: Final = 2.0

# prometheus_client's own switch: set before it is imported, each process writes its values
# to files there (the API's worker processes inherit it from `serve`).
MULTIPROC_DIR_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backlog:
    ledger: LedgerBacklog | None  # None: PostgreSQL did not answer
    queue: dict[str, int] | None  # None: Redis did not answer
    # Ledger rows carrying a Stripe error, per code; None: PostgreSQL did not answer.
    stripe_errors: dict[str, int] | None = None
    # The worker's newest daily reconcile; None: none yet, or PostgreSQL did not answer.
    reconciliation: RunSummary | None = None


async def _answer_or_none(source: str, query: Awaitable[T]) -> T | None:
    try:
        return await asyncio.wait_for(query, SOURCE_TIMEOUT_SECONDS)
    except Exception as error:  # a scrape must answer whatever the source does
        logger.warning("metrics: %s did not answer: %s", source, type(error).__name__)
        return None


async def read_backlog(engine: AsyncEngine, redis: Redis) -> Backlog:
    ledger, queue, stripe_errors, reconciliation = await asyncio.gather(
        _answer_or_none("postgresql", ledger_backlog(engine)),
        _answer_or_none("redis", queue_depth(redis)),
        _answer_or_none("postgresql", ledger_stripe_errors(engine)),
        _answer_or_none("postgresql", latest_reconciliation(engine)),
    )
    if ledger is None:
        return Backlog(None, queue)
    return Backlog(ledger, queue, stripe_errors, reconciliation)


def backlog_families(backlog: Backlog) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "sensor_billing_backlog_source_up",
        "1 when the source of the backlog gauges answered this scrape, else 0.",
        labels=["source"],
    )
    up.add_metric(["postgresql"], float(backlog.ledger is not None))
    up.add_metric(["redis"], float(backlog.queue is not None))
    yield up
    if backlog.ledger is not None:
        yield GaugeMetricFamily(
            "sensor_billing_ledger_pending_reports",
            "Ledger rows (meter_reports) not yet accepted by Stripe.",
            value=backlog.ledger.pending,
        )
        yield GaugeMetricFamily(
            "sensor_billing_ledger_oldest_pending_age_seconds",
            "Age of the oldest pending ledger row (0 when none is pending).",
            value=backlog.ledger.oldest_pending_age_seconds,
        )
        if backlog.ledger.closed_through is not None:
            yield GaugeMetricFamily(
                "sensor_billing_last_closed_window_timestamp_seconds",
                "End of the last closed usage window (max metering_cursors.closed_through).",
                value=backlog.ledger.closed_through.timestamp(),
            )
    if backlog.stripe_errors is not None:
        errors = GaugeMetricFamily(
            "sensor_billing_ledger_rows_with_stripe_error",
            "Ledger rows Stripe reported invalid after accepting them (a thin meter error "
            "event named them), by Stripe's error code: that usage did not count in Stripe.",
            labels=["code"],
        )
        for code, count in sorted(backlog.stripe_errors.items()):
            errors.add_metric([code], count)
        yield errors
    if backlog.reconciliation is not None:
        yield from reconciliation_families(backlog.reconciliation)
    if backlog.queue is not None:
        jobs = GaugeMetricFamily(
            "sensor_billing_meter_queue_jobs",
            "Jobs in the meter-reporting queue, by state.",
            labels=["state"],
        )
        for state, count in backlog.queue.items():
            jobs.add_metric([state], count)
        yield jobs


def reconciliation_families(run: RunSummary) -> Iterator[Metric]:
    """The worker's newest daily reconcile (metering/daily_checks.py)."""
    yield GaugeMetricFamily(
        "sensor_billing_reconcile_last_run_timestamp_seconds",
        "When the worker's newest daily reconcile (of the previous UTC day) finished.",
        value=run.finished_at.timestamp(),
    )
    yield GaugeMetricFamily(
        "sensor_billing_reconcile_last_run_failed",
        "1 when the newest daily reconcile could not run (Stripe or the meters unreadable).",
        value=float(run.outcome == "failed"),
    )
    yield GaugeMetricFamily(
        "sensor_billing_reconcile_drift_hours",
        "Customer-meter hours where Stripe's summary and the ledger differed, in the newest "
        "daily reconcile.",
        value=run.hours_with_drift,
    )
    yield GaugeMetricFamily(
        "sensor_billing_reconcile_readings_drift",
        "Stripe's temperature_readings total minus the ledger's over the newest daily "
        "reconcile's day, all organizations (positive: Stripe bills more).",
        value=float(run.readings_drift),
    )


def process_metrics() -> Iterable[Metric]:
    """Counters and histograms: this process's, or with `PROMETHEUS_MULTIPROC_DIR` set
    (`serve --workers N>1`), the sum over every worker process, whichever one answers."""
    directory = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if not directory:
        return REGISTRY.collect()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry.collect()


class ScrapeCollector:
    """The process metrics (counters, histograms) followed by one scrape's backlog gauges."""

    def __init__(self, backlog: Backlog) -> None:
        self.backlog = backlog

    def collect(self) -> Iterable[Metric]:
        yield from process_metrics()
        yield from backlog_families(self.backlog)


async def render_metrics(engine: AsyncEngine, redis: Redis, accept: str) -> tuple[bytes, str]:
    """The exposition body and its content type (text format, or OpenMetrics if accepted)."""
    collector = ScrapeCollector(await read_backlog(engine, redis))
    encode, content_type = choose_encoder(accept)
    return encode(collector), content_type
