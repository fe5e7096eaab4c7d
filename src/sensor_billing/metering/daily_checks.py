"""The worker's daily checks: yesterday's usage against Stripe; the webhook store and the
entitlement notices whose job was added long ago pruned.

`sensor-billing reconcile` and `sensor-billing events prune` are what an operator runs; this is
the same work on the worker's own schedule (a bullmq job scheduler kept in Redis, so one job
per day whatever the number of replicas, and one replica runs it), so drift is found without
anyone starting a reconcile. Each run is recorded (`reconciliation_runs`); the /ops overview
and the metrics show the newest. A run is cheap to repeat: it reads and records, and writes
nothing else but the pruning.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import stripe
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.billing.entitlement_notices import prune_enqueued_notices
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import ReconcileOutcome
from sensor_billing.errors import SensorBillingError
from sensor_billing.metering import daily_checks_repository as repository
from sensor_billing.metering.reconcile import Period, Reconciliation, Throttle, reconcile_period
from sensor_billing.metering.windows import floor_to_window
from sensor_billing.webhooks.retention import DEFAULT_RETENTION, prune_processed_events

logger = logging.getLogger("sensor_billing.metering")

DAILY_CHECKS_JOB = "meter:daily-checks"
DAILY_CHECKS_SCHEDULER = "meter-daily-checks"
# 02:30 UTC: the previous day's last windows are closed (grace at most an hour) and sent by
# then; an hour still pending is listed as unsent, not as drift.
DAILY_CHECKS_SCHEDULE = {"pattern": "30 2 * * *"}
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class DailyChecks:
    period: Period
    outcome: ReconcileOutcome
    events_pruned: int
    notices_pruned: int
    hours_with_drift: int = 0
    readings_drift: Decimal = Decimal(0)
    error: str | None = None


def previous_day(now: datetime) -> Period:
    end = floor_to_window(now, DAY)
    return Period(end - DAY, end)


def _summary(result: Reconciliation) -> dict[str, object]:
    readings = [meter for meter in result.meters if meter.event_name == "temperature_readings"]
    return {
        "hours_compared": sum(meter.windows_compared for meter in result.meters),
        "hours_with_drift": len(result.drifts),
        "hours_unsent": len(result.unsent),
        "organizations_with_drift": len(
            {meter.organization_id for meter in result.meters if meter.has_drift}
        ),
        "readings_drift": sum((meter.drift for meter in readings), Decimal(0)),
    }


async def run_daily_checks(
    engine: AsyncEngine,
    sessions: SessionFactory,
    client: stripe.StripeClient,
    throttle: Throttle,
    *,
    configured_meter_ids: dict[str, str],
    now: datetime,
    job_id: str | None = None,
) -> DailyChecks:
    """Prune webhook events and entitlement notices past the default age, reconcile the
    previous UTC day, record the run. A reconcile that could not run (Stripe unavailable, no
    meter) is recorded as failed and raised, so the job fails and shows on /ops."""
    started, clock = now, time.monotonic()

    def finished() -> datetime:
        return started + timedelta(seconds=time.monotonic() - clock)

    pruned = await prune_processed_events(sessions, DEFAULT_RETENTION, now=now)
    notices_pruned = await prune_enqueued_notices(engine, DEFAULT_RETENTION, now=now)
    period = previous_day(now)
    values: dict[str, object] = {
        "period_start": period.start,
        "period_end": period.end,
        "events_pruned": pruned,
        "notices_pruned": notices_pruned,
        "job_id": job_id,
        "started_at": started,
    }
    try:
        result = await reconcile_period(
            sessions, client, throttle, configured_meter_ids=configured_meter_ids, period=period
        )
    except SensorBillingError as error:
        async with unit_of_work(sessions) as session:
            await repository.record_run(
                session,
                {
                    **values,
                    "outcome": ReconcileOutcome.FAILED.value,
                    "error": str(error),
                    "finished_at": finished(),
                },
            )
        logger.warning("daily reconcile of %s failed: %s", period.start.date(), error)
        raise
    outcome = ReconcileOutcome.DRIFT if result.has_drift else ReconcileOutcome.NO_DRIFT
    summary = _summary(result)
    async with unit_of_work(sessions) as session:
        await repository.record_run(
            session,
            {**values, **summary, "outcome": outcome.value, "finished_at": finished()},
        )
    log = logger.warning if result.has_drift else logger.info
    log(
        "daily reconcile of %s: %s (%s hours with drift); %d webhook events and %d"
        " entitlement notices pruned",
        period.start.date(),
        outcome.value,
        summary["hours_with_drift"],
        pruned,
        notices_pruned,
    )
    return DailyChecks(
        period,
        outcome,
        pruned,
        notices_pruned,
        hours_with_drift=len(result.drifts),
        readings_drift=Decimal(str(summary["readings_drift"])),
    )
