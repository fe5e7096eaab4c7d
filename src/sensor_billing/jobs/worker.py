"""The `meter-reporting` worker: reports usage jobs, closes windows on a schedule, sweeps.

One process runs a bullmq Worker (concurrency METER_WORKER_CONCURRENCY) and, through bullmq
job schedulers kept in Redis (so N replicas do not multiply them), closes windows every
METER_CLOSE_INTERVAL_SECONDS (also once at start) and runs the daily checks once a day
(metering/daily_checks.py: yesterday reconciled, old webhook events and entitlement notices
pruned). Each close is
followed by the entitlement checks (billing/entitlement_notices.py: grace periods that ended,
notices whose `billing-events` job was lost). A report job's
ledger work (its claim and its outcome) shares statements with the other jobs of the process
(`SendLedger`, a group commit); a close is one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import stripe
from bullmq import DelayedError, UnrecoverableError, Worker

from sensor_billing.billing.entitlement_notices import (
    notice_grace_ends,
    sweep_entitlement_notices,
)
from sensor_billing.db import create_engine, create_session_factory, unit_of_work
from sensor_billing.errors import InvalidJobDataError, StripeUnavailableError
from sensor_billing.jobs.connection import fix_bullmq_block_timeouts, open_queue
from sensor_billing.jobs.meter_reports import parse_meter_report_data
from sensor_billing.jobs.pipelining import bullmq_worker_connection
from sensor_billing.jobs.registry import (
    METER_REPORT_JOB_OPTIONS,
    MeterReportJobData,
    QueueNames,
)
from sensor_billing.metering import repository as ledger
from sensor_billing.metering.daily_checks import (
    DAILY_CHECKS_JOB,
    DAILY_CHECKS_SCHEDULE,
    DAILY_CHECKS_SCHEDULER,
    run_daily_checks,
)
from sensor_billing.metering.outbox import EXHAUSTED_JOB_COOL_DOWN, sweep
from sensor_billing.metering.reporter import (
    WINDOW_IDENTIFIER_PREFIX,
    Verdict,
    ledger_identifier_for_job,
    report_usage,
)
from sensor_billing.metering.send_ledger import SendLedger
from sensor_billing.metering.service import ClosePolicy, close_windows
from sensor_billing.metering.stale_resend import StripeHourSummaries, stale_check
from sensor_billing.metering.stream import MeterEventStream, stream_backlog
from sensor_billing.metering.windows import oldest_sendable_timestamp
from sensor_billing.observability import (
    record_late_readings,
    record_meter_report,
    serve_metrics,
    timed_stripe_request,
)
from sensor_billing.settings import Settings
from sensor_billing.stripe_api.client import create_http_client, create_stripe_client
from sensor_billing.stripe_api.meter_events import MeterEvent, send_meter_event
from sensor_billing.stripe_api.rate_limit import AccountRateLimiter

logger = logging.getLogger("sensor_billing.worker")

CLOSE_WINDOWS_JOB = "meter:close-windows"
CLOSE_WINDOWS_SCHEDULER = "meter-close-windows"
# Another producer's job whose ledger row could not be written waits, delayed, a quarter of its
# age between tries, within these bounds (seconds).
POSTPONE_MIN_SECONDS = 5.0
POSTPONE_MAX_SECONDS = 600.0

# The worker's connections in pg_stat_activity.
WORKER_APPLICATION_NAME = "sensor-billing-worker"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class MeteringWorker:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        http_client: stripe.HTTPClient | None = None,
        concurrency: int | None = None,
        job_options: Mapping[str, Any] = METER_REPORT_JOB_OPTIONS,
        revive_after: timedelta = EXHAUSTED_JOB_COOL_DOWN,
        schedule_check_seconds: float = 60.0,
        daily_schedule: Mapping[str, Any] = DAILY_CHECKS_SCHEDULE,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.concurrency = concurrency or settings.meter_worker_concurrency
        # The send ledger keeps one connection; another producer's job holds one while it
        # writes its row (one per concurrent job at most); one for the closer and the sweep.
        self.engine = create_engine(
            settings.database_url,
            pool_size=self.concurrency + 2,
            application_name=WORKER_APPLICATION_NAME,
        )
        self.sessions = create_session_factory(self.engine)
        self.ledger = SendLedger(self.engine, batch_size=self.concurrency)
        # bullmq's worker and the account limiter: their calls share round trips.
        self.redis = bullmq_worker_connection(settings.redis_url)
        self.limiter = AccountRateLimiter(self.redis, settings.meter_rate_limit_per_second)
        # Every Stripe client of the worker shares one connection pool; the worker closes it
        # unless the caller brought it.
        self._owns_http = http_client is None
        self._http = http_client or create_http_client()
        self.stripe = create_stripe_client(settings, http_client=self._http)
        self.stream = MeterEventStream(self.stripe, self._session_client)
        self.check_stale = stale_check(
            StripeHourSummaries(self.stripe, self.limiter.acquire, settings.configured_meter_ids),
            self.engine,
        )
        self.policy = ClosePolicy(
            window=timedelta(seconds=settings.meter_window_seconds),
            grace=timedelta(seconds=settings.meter_grace_seconds),
            backfill_start=settings.meter_backfill_start,
        )
        self.schedule_check_seconds = schedule_check_seconds
        self.daily_schedule = daily_schedule
        self._schedule_watch: asyncio.Task[None] | None = None
        self.job_options = job_options
        self.revive_after = revive_after
        self.queue: Any = None
        # Entitlement notices the API could not add, and grace periods that ended, go here.
        self.billing_events: Any = None
        self.worker: Any = None
        # Set by `request_stop`: a stream backlog takes no new batch, the start-up takes no job.
        self.stopping = asyncio.Event()

    def _session_client(self, token: str) -> stripe.StripeClient:
        return create_stripe_client(self.settings, api_key=token, http_client=self._http)

    async def start(self) -> None:
        fix_bullmq_block_timeouts()
        self.queue = open_queue(self.settings.redis_url, QueueNames.METER_REPORTING)
        self.billing_events = open_queue(self.settings.redis_url, QueueNames.BILLING_EVENTS)
        await self.run_close_windows()
        await self._schedule_jobs()
        self._schedule_watch = asyncio.create_task(self._keep_schedule())
        if self.stopping.is_set():
            return
        self.worker = Worker(
            QueueNames.METER_REPORTING.value,
            self.process,
            {
                # Jobs that finish together (one ledger statement) move on together: their
                # Redis calls share round trips (`jobs/pipelining.py`).
                "connection": self.redis,
                "concurrency": self.concurrency,
                "lockDuration": self.settings.meter_job_lock_seconds * 1000,
                "stalledInterval": self.settings.meter_job_lock_seconds * 1000,
            },
        )

    async def _schedule_jobs(self) -> None:
        await self.queue.upsertJobScheduler(
            CLOSE_WINDOWS_SCHEDULER,
            {"every": self.settings.meter_close_interval_seconds * 1000},
            CLOSE_WINDOWS_JOB,
            {},
            {"removeOnComplete": 50, "removeOnFail": 100},
        )
        await self.queue.upsertJobScheduler(
            DAILY_CHECKS_SCHEDULER,
            dict(self.daily_schedule),
            DAILY_CHECKS_JOB,
            {},
            {"removeOnComplete": 50, "removeOnFail": 100},
        )

    async def _keep_schedule(self) -> None:
        """The schedules live in Redis: if Redis lost its data, create them again."""
        while True:
            await asyncio.sleep(self.schedule_check_seconds)
            try:
                for scheduler in (CLOSE_WINDOWS_SCHEDULER, DAILY_CHECKS_SCHEDULER):
                    if not await self.queue.isJobScheduler(scheduler):
                        logger.warning("schedule %s missing from Redis: creating it", scheduler)
                        await self._schedule_jobs()
                        break
            except Exception as error:  # Redis away: try again next time
                logger.warning("cannot check the schedules: %s", error)

    def request_stop(self) -> None:
        """Begin stopping, even while `start` runs: a stream backlog ends after the batches
        in flight (which are recorded), instead of sending the rest first."""
        self.stopping.set()

    async def stop(self) -> None:
        """Let running jobs finish (bullmq waits for them), then release everything, each
        resource even if closing another failed."""
        self.request_stop()
        if self._schedule_watch is not None:
            self._schedule_watch.cancel()
        try:
            if self.worker is not None:
                await self._close_worker()
        finally:
            try:
                if self.queue is not None:
                    await self.queue.close()
                if self.billing_events is not None:
                    await self.billing_events.close()
            finally:
                await self.ledger.close()
                await self.redis.aclose()
                await self.engine.dispose()
                if self._owns_http:
                    await self._http.close_async()  # type: ignore[no-untyped-call]

    async def _close_worker(self) -> None:
        """bullmq's close waits for running jobs and cannot be cancelled; with Redis down, a
        job that finished retries reporting it without end, and so would the close. Running
        jobs get the job lock's time to finish; then they are cancelled (their transactions
        roll back, as after a SIGKILL, and another worker runs them again)."""
        graceful = asyncio.ensure_future(self.worker.close())
        done, _ = await asyncio.wait({graceful}, timeout=self.settings.meter_job_lock_seconds)
        if done:
            graceful.result()
            return
        logger.warning("running jobs did not finish within the job lock: cancelling them")
        self.worker.cancelProcessing()
        done, _ = await asyncio.wait({graceful}, timeout=self.settings.meter_job_lock_seconds)
        if not done:
            logger.warning("the queue worker did not close; leaving it")

    async def process(self, job: Any, token: str) -> Any:
        if job.name == CLOSE_WINDOWS_JOB:
            return await self.run_close_windows()
        if job.name == DAILY_CHECKS_JOB:
            return await self.run_daily_checks(str(job.id))
        return await self.report(job, token)

    async def run_daily_checks(self, job_id: str | None = None) -> dict[str, Any]:
        checks = await run_daily_checks(
            self.engine,
            self.sessions,
            self.stripe,
            self.limiter.acquire,
            configured_meter_ids=self.settings.configured_meter_ids,
            now=self.clock(),
            job_id=job_id,
        )
        return {
            "day": checks.period.start.date().isoformat(),
            "outcome": checks.outcome.value,
            "hours_with_drift": checks.hours_with_drift,
            "events_pruned": checks.events_pruned,
            "notices_pruned": checks.notices_pruned,
        }

    async def report(self, job: Any, token: str) -> str:
        try:
            data = parse_meter_report_data(job.data)
        except InvalidJobDataError as error:
            record_meter_report(Verdict.FAILED)
            raise UnrecoverableError(str(error)) from None
        job_id = str(job.id)
        try:
            identifier = job_id
            if not job_id.startswith(WINDOW_IDENTIFIER_PREFIX):
                # Another producer's job: its row is written (if new) and committed first, so
                # that the claim below finds it.
                async with self.engine.begin() as connection:
                    identifier = await ledger_identifier_for_job(
                        connection, job_id, int(job.timestamp), data
                    )
            result = await report_usage(
                self.ledger,
                identifier,
                send=self._send,
                throttle=self.limiter.acquire,
                now=self.clock(),
                check_stale=self.check_stale,
            )
        except Exception as error:
            if job_id.startswith(WINDOW_IDENTIFIER_PREFIX):
                raise  # a window's row is in the ledger: the sweep sends it whatever happens here
            await self._postpone(job, token, data, error)
        record_meter_report(result.verdict)
        # The attempt is committed above; now tell the queue what to do with the job.
        if result.verdict is Verdict.RETRY:
            raise StripeUnavailableError(result.detail)
        if result.verdict is Verdict.FAILED:
            logger.warning("meter report %s failed for good: %s", identifier, result.detail)
            raise UnrecoverableError(result.detail)
        return result.verdict.value

    async def _postpone(
        self, job: Any, token: str, data: MeterReportJobData, error: Exception
    ) -> NoReturn:
        """Another producer's job whose unit of work failed (PostgreSQL unreachable, its
        organization not committed yet) may have no ledger row: it is the only record of the
        usage. Failed, it would sit in the failed set, which bullmq trims to the newest
        `removeOnFail` jobs whenever any job fails (other producers' included), so a burst of
        failures would delete it. It waits delayed instead, using none of its attempts, until
        Stripe's 35-day limit passes (for its timestamp, or for its creation when earlier)."""
        # Counted from the job's creation too: a timestamp ahead of it (the wire allows up to
        # 9999) would otherwise keep a job whose row can never be written retrying for years.
        added = int(job.timestamp) // 1000
        moment = min(data.timestamp, added) if data.timestamp is not None else added
        reason = f"{type(error).__name__}: {error}"
        if moment < oldest_sendable_timestamp(self.clock()).timestamp():
            record_meter_report(Verdict.FAILED)
            raise UnrecoverableError(
                f"Stripe's 35-day limit passed before the report had a ledger row ({reason})"
            ) from error
        now = time.time()  # bullmq's clock, not the worker's (tests move that one)
        age = max(0.0, now - int(job.timestamp) / 1000)
        delay = min(max(age / 4, POSTPONE_MIN_SECONDS), POSTPONE_MAX_SECONDS)
        logger.warning(
            "meter report job %s not recorded (%s): trying again in %.0f s", job.id, reason, delay
        )
        record_meter_report(Verdict.RETRY)
        await job.moveToDelayed(int((now + delay) * 1000), token)
        raise DelayedError() from error

    async def _send(self, event: MeterEvent) -> bool:
        with timed_stripe_request():
            return await send_meter_event(self.stripe, event)

    async def run_close_windows(self) -> dict[str, Any]:
        now = self.clock()
        async with unit_of_work(self.sessions) as session:
            summary = await close_windows(session, self.policy, now)
            pending = await ledger.count_pending(session)
        record_late_readings(summary.late_readings)
        if summary.organizations_without_customer:
            logger.info(
                "not metered (no Stripe customer): %s",
                ", ".join(str(org) for org in summary.organizations_without_customer),
            )
        streamed = 0
        if pending > self.settings.meter_stream_threshold:
            try:
                streamed = await stream_backlog(
                    self.sessions,
                    self.stream,
                    clock=self.clock,
                    limit=pending,
                    stopping=self.stopping,
                )
            except Exception as error:  # the jobs below carry whatever the stream did not
                logger.warning("stream backlog stopped: %s", error)
        swept = await sweep(
            self.sessions,
            self.queue,
            # After the close's commit: its rows are stamped later than `now`.
            now=self.clock(),
            job_options=self.job_options,
            revive_after=self.revive_after,
        )
        notices = await self.run_entitlement_checks()
        logger.info(
            "closed windows through %s: %s (%d late readings billed by arrival); streamed %d; "
            "enqueued %d, revived %d",
            summary.closed_through.isoformat(),
            summary.rows_by_status or "nothing new",
            summary.late_readings,
            streamed,
            swept.enqueued,
            swept.revived,
        )
        return {
            "closed_through": summary.closed_through.isoformat(),
            "rows": summary.rows_by_status,
            "late_readings": summary.late_readings,
            "streamed": streamed,
            "enqueued": swept.enqueued,
            "revived": swept.revived,
            "entitlement_notices": notices,
        }

    async def run_entitlement_checks(self) -> int:
        """On the close's schedule: a notice for each grace period that ended, and the job of
        each notice whose add was lost; how many jobs were added. Its failure leaves the
        close's result alone (the next run tries again)."""
        if self.billing_events is None:
            return 0
        try:
            now = self.clock()
            ended = await notice_grace_ends(
                self.engine, self.billing_events, now=now, grace=self.settings.past_due_grace
            )
            swept = await sweep_entitlement_notices(self.engine, self.billing_events, now=now)
        except Exception as error:
            logger.warning("entitlement checks failed: %s", error)
            return 0
        if ended or swept:
            logger.info("entitlement notices: %d grace ends, %d swept", ended, swept)
        return ended + swept


async def _relay_stop(stop: asyncio.Event, worker: MeteringWorker) -> None:
    await stop.wait()
    worker.request_stop()


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    stop_metrics = (
        serve_metrics(settings.worker_metrics_port) if settings.worker_metrics_port else None
    )
    try:
        worker = MeteringWorker(settings)
        # A SIGTERM during the start-up close (a backlog streamed after an outage) stops it.
        relay = asyncio.create_task(_relay_stop(stop, worker))
        try:
            await worker.start()
            if not stop.is_set():
                logger.info("worker started (concurrency %d)", worker.concurrency)
            await stop.wait()
        finally:
            relay.cancel()
            logger.info("stopping: letting running sends finish")
            await worker.stop()
    finally:
        if stop_metrics is not None:
            stop_metrics()
