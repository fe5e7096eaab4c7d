"""Reporting one ledger row to Stripe: claim it, call Stripe once, record the answer.

The row is claimed through the worker's `SendLedger` (one sender per row: a row that is not
pending is not sent), with its (customer, meter) pair held while the call runs (Stripe allows
one concurrent call per pair); the account budget is respected, and the call carries the row's
identifier and a stable idempotency key: however often this runs, Stripe records the usage
once within its 24 h identifier window, and the ledger says `sent` after that. The claim and
the outcome are written with other jobs' (a group commit); nothing here commits.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from sensor_billing.db.schema import ReportStatus
from sensor_billing.errors import (
    StripeRefusedError,
    StripeUnavailableError,
    UnknownOrganizationError,
)
from sensor_billing.jobs.registry import MeterReportJobData
from sensor_billing.metering import repository
from sensor_billing.metering.send_ledger import SendLedger
from sensor_billing.metering.send_repository import ReportForSend, ReportOutcome
from sensor_billing.metering.windows import event_timestamp, oldest_sendable_timestamp
from sensor_billing.stripe_api.meter_events import MeterEvent

Sender = Callable[[MeterEvent], Awaitable[bool]]
Throttle = Callable[[], Awaitable[None]]
# Before a send: None to go on, or what became of a row pending for more than a day
# (metering/stale_resend.py, which may mark it sent or failed instead, and commits that
# before it returns).
StaleCheck = Callable[[ReportForSend, datetime], Awaitable["ReportResult | None"]]

# Window rows' identifiers start with this (see CLOSE_WINDOWS); a job with such an id and no
# row is stale (its organization was deleted), never a foreign report.
WINDOW_IDENTIFIER_PREFIX = "sb."
# Rows made for other producers' jobs (`foreign_identifier`) start with this.
FOREIGN_IDENTIFIER_PREFIX = "job."


class Verdict(enum.StrEnum):
    SENT = "sent"  # accepted now
    ALREADY_SENT = "already_sent"  # Stripe had the identifier, or the row was done before
    SKIPPED = "skipped"
    CANCELLED = "cancelled"  # withdrawn by a correction: never sent again
    RETRY = "retry"  # Stripe unavailable: the queue retries
    FAILED = "failed"  # refused for good
    NO_REPORT = "no_report"  # nothing in the ledger to send


@dataclass(frozen=True, slots=True)
class ReportResult:
    verdict: Verdict
    detail: str = ""


def foreign_identifier(job_id: str, job_timestamp_ms: int) -> str:
    """The identifier of a report another producer added as a job: its job id plus its
    creation time, so ids that restart after a Redis wipe never collide."""
    identifier = f"{FOREIGN_IDENTIFIER_PREFIX}{job_id}.{job_timestamp_ms}"
    if len(identifier) <= 100:
        return identifier
    return FOREIGN_IDENTIFIER_PREFIX + hashlib.sha256(identifier.encode()).hexdigest()


async def ledger_identifier_for_job(
    connection: AsyncSession | AsyncConnection,
    job_id: str,
    job_timestamp_ms: int,
    data: MeterReportJobData,
) -> str:
    """The ledger row a job reports: a window's own (job id = identifier; `report_usage`
    finds it, or says it is gone), or, for a job another producer added, a row created now
    under an identifier derived from the job id."""
    if job_id.startswith(WINDOW_IDENTIFIER_PREFIX):
        return job_id
    # The sweep's job for a pending row that another producer's job created carries the row's
    # identifier as its id. Deriving a new identifier from it would make a second row for the
    # same usage, and both would be billed.
    if job_id.startswith(FOREIGN_IDENTIFIER_PREFIX) and await repository.existing_identifiers(
        connection, [job_id]
    ):
        return job_id
    identifier = foreign_identifier(job_id, job_timestamp_ms)
    moment = datetime.fromtimestamp(
        data.timestamp if data.timestamp is not None else job_timestamp_ms // 1000, UTC
    )
    found, customer = await repository.organization_customer(connection, data.organization_id)
    if not found:
        raise UnknownOrganizationError(f"no organization {data.organization_id}")
    await repository.insert_job_report(
        connection,
        {
            "organization_id": data.organization_id,
            "event_name": data.event_name,
            "window_start": moment,
            # The event's timestamp is window_end - 1 s; a job's timestamp is the moment itself.
            "window_end": datetime.fromtimestamp(moment.timestamp() + 1, UTC),
            "value": data.value,
            "stripe_customer_id": customer,
            "identifier": identifier,
            "status": ReportStatus.PENDING if customer else ReportStatus.SKIPPED,
            "skip_reason": None if customer else "organization has no Stripe customer",
        },
    )
    return identifier


async def report_usage(
    ledger: SendLedger,
    identifier: str,
    *,
    send: Sender,
    throttle: Throttle,
    now: datetime,
    check_stale: StaleCheck,
) -> ReportResult:
    async with ledger.claim(identifier) as row:
        if row is None:
            return ReportResult(Verdict.NO_REPORT, "no ledger row")
        if row.status == ReportStatus.FAILED:
            # `jobs retry` of a failed row's job lands here: only a re-send makes it pending again.
            return ReportResult(
                Verdict.FAILED,
                f"the ledger row is failed; once the cause is fixed, `sensor-billing usage resend "
                f"--row {row.identifier}` re-sends it",
            )
        if row.status != ReportStatus.PENDING:
            return ReportResult(
                Verdict.ALREADY_SENT if row.status == "sent" else Verdict(row.status)
            )
        if not row.stripe_customer_id:
            reason = "organization has no Stripe customer"
            await ledger.record(
                ReportOutcome(row.id, ReportStatus.SKIPPED, now, skip_reason=reason)
            )
            return ReportResult(Verdict.SKIPPED, reason)
        timestamp = event_timestamp(row.window_end)
        if timestamp < oldest_sendable_timestamp(now).timestamp():
            error = "Stripe's 35-day limit passed before Stripe accepted the report"
            await ledger.record(ReportOutcome(row.id, ReportStatus.FAILED, now, last_error=error))
            return ReportResult(Verdict.FAILED, error)

        settled = await check_stale(row, now)
        if settled is not None:
            return settled
        # The row is pending and its (customer, meter) pair is this job's (`ledger.claim`).
        await throttle()
        event = MeterEvent(
            event_name=row.event_name,
            customer_id=row.stripe_customer_id,
            value=row.value,
            identifier=row.identifier,
            timestamp=timestamp,
            key_generation=row.key_generation,
        )
        try:
            accepted = await send(event)
        except StripeUnavailableError as error:
            # Stripe keeps a 5xx under the key and would replay it: the next call needs a new one.
            moved_on = error.status is not None and error.status >= 500
            await ledger.record(
                ReportOutcome(
                    row.id,
                    ReportStatus.PENDING,
                    now,
                    attempted=True,
                    last_error=str(error),
                    key_step=1 if moved_on else 0,
                )
            )
            return ReportResult(Verdict.RETRY, str(error))
        except StripeRefusedError as error:
            await ledger.record(
                ReportOutcome(
                    row.id,
                    ReportStatus.FAILED,
                    now,
                    attempted=True,
                    last_error=str(error),
                    last_error_code=error.code,
                )
            )
            return ReportResult(Verdict.FAILED, str(error))
        await ledger.record(ReportOutcome(row.id, ReportStatus.SENT, now, attempted=True))
        return ReportResult(Verdict.SENT if accepted else Verdict.ALREADY_SENT)


__all__ = [
    "FOREIGN_IDENTIFIER_PREFIX",
    "WINDOW_IDENTIFIER_PREFIX",
    "ReportResult",
    "StaleCheck",
    "Verdict",
    "foreign_identifier",
    "ledger_identifier_for_job",
    "report_usage",
]
