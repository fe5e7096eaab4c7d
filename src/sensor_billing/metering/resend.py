"""Re-sending usage Stripe did not bill, once an operator has fixed the cause. Nothing here
commits; the caller's unit of work does, and hands the pending rows to the queue after.

Two kinds of rows bill nothing, and each keeps its own identifier rule:

- **`failed`**: Stripe refused the call (a 4xx other than the duplicate-identifier answer), so
  it recorded no event and the identifier is unused. The row goes back to `pending` under the
  same identifier with the next idempotency key (`key_generation`). Stripe saves a v1
  request's status and body under its key once the endpoint's execution has begun, refusals
  included, and replays them to every retry with that key for at least 24 h; only requests
  refused in validation, before execution, are not saved (docs.stripe.com/idempotency): the
  old key could answer the fixed row with the old refusal. If an earlier attempt of the row was
  recorded after all (a lost answer, then a refusal), the identifier still refuses a second
  recording within Stripe's 24 h, and after that the send path checks Stripe's summaries
  first (stale_resend.py).
- **`sent` with a Stripe error** (a thin meter error event named it): Stripe accepted the
  event, so its identifier is used (refused for at least 24 h, and the ledger never sends a
  sent row twice), then found it invalid, so it counts on no invoice. A new row re-sends the
  usage: a correction (`source = correction`, `corrects_id` = the window's row) under
  `<identifier>.s<n>`, same window and value, `pending`. The original keeps its status and
  error and points at it (`replaced_by_id`), so it is re-sent once; reconciliation and
  corrections then count the new row instead of it.

Both take the organization's current Stripe customer: a common fix is correcting it
(`meter_event_customer_not_found`). Rows are refused when the organization has no live
customer, or when the window's timestamp is past Stripe's 35 days (settle those by hand).
Rows that are pending, sent without an error, skipped or cancelled are never re-sent.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.db.schema import MeterReport, ReportSource, ReportStatus
from sensor_billing.errors import InvalidInputError, ResendNotPossibleError
from sensor_billing.metering import repository as ledger
from sensor_billing.metering import resend_repository as repository
from sensor_billing.metering.corrections import correction_identifier
from sensor_billing.metering.windows import event_timestamp, oldest_sendable_timestamp


class ResendAction(enum.StrEnum):
    SAME_IDENTIFIER = "same_identifier"  # a failed row, back to pending
    NEW_IDENTIFIER = "new_identifier"  # a row Stripe reported invalid, re-sent as a new row


@dataclass(frozen=True, slots=True)
class ResendSelection:
    """Which rows: one (`row`: its id or identifier), or those of an organization and/or with
    an error code (Stripe's code on a refused call, or on a meter error report)."""

    row: str | None = None
    organization_id: uuid.UUID | None = None
    code: str | None = None
    # An operator compared the row with Stripe (reconcile) and wants it sent without the
    # check a row pending for over a day gets first (stale_resend.py).
    without_stripe_check: bool = False

    def describe(self) -> str:
        parts = [
            f"{name} {value}"
            for name, value in (
                ("row", self.row),
                ("organization", self.organization_id),
                ("code", self.code),
            )
            if value is not None
        ]
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class ResendCandidate:
    report: MeterReport
    customer: str | None  # the organization's live Stripe customer now
    action: ResendAction
    refused: str | None = None  # why it cannot be re-sent now
    new_identifier: str | None = None  # filled in by `resend`


@dataclass(frozen=True, slots=True)
class ResendPlan:
    selection: ResendSelection
    candidates: list[ResendCandidate]

    @property
    def sendable(self) -> list[ResendCandidate]:
        return [candidate for candidate in self.candidates if candidate.refused is None]

    @property
    def refused(self) -> list[ResendCandidate]:
        return [candidate for candidate in self.candidates if candidate.refused is not None]


def _refusal(report: MeterReport, customer: str | None, now: datetime) -> str | None:
    if customer is None:
        return "the organization has no live Stripe customer: link one, then re-send"
    if event_timestamp(report.window_end) < oldest_sendable_timestamp(now).timestamp():
        return "its window is past Stripe's 35 days for meter events: settle it by hand"
    return None


def _action(report: MeterReport) -> ResendAction:
    if report.status == ReportStatus.FAILED:
        return ResendAction.SAME_IDENTIFIER
    return ResendAction.NEW_IDENTIFIER


async def plan_resend(
    session: AsyncSession, selection: ResendSelection, *, now: datetime
) -> ResendPlan:
    """The rows the selection names that bill nothing, locked until the transaction ends (a
    second resend at once waits, then finds them pending or replaced). A `row` that cannot be
    re-sent is an error naming why; an empty selection is not (the plan says so)."""
    if selection.row is None and selection.organization_id is None and selection.code is None:
        raise InvalidInputError("give --row, --org or --code (or --org with --code)")
    if selection.row is not None:
        found = await repository.report_for_resend(session, selection.row)
        if found is None:
            raise InvalidInputError(f"no ledger row {selection.row!r} (an id or identifier)")
        report, customer = found
        if not repository.bills_nothing(report):
            raise ResendNotPossibleError(_why_not(report))
        rows = [(report, customer)]
    else:
        rows = await repository.reports_billing_nothing(
            session, organization_id=selection.organization_id, code=selection.code
        )
    return ResendPlan(
        selection,
        [
            ResendCandidate(report, customer, _action(report), _refusal(report, customer, now))
            for report, customer in rows
        ],
    )


def _why_not(report: MeterReport) -> str:
    if report.replaced_by_id is not None:
        return (
            f"{report.identifier} was already re-sent (ledger row #{report.replaced_by_id}); "
            "re-send that row if it failed too"
        )
    if report.status == ReportStatus.PENDING:
        return f"{report.identifier} is pending: the worker is sending it"
    if report.status == ReportStatus.SENT:
        return f"{report.identifier} is sent and Stripe reported no error for it: never re-sent"
    return f"{report.identifier} is {report.status}: it is never sent"


async def resend(
    session: AsyncSession, plan: ResendPlan, *, now: datetime
) -> tuple[list[ResendCandidate], list[ledger.PendingReport]]:
    """Apply the plan's sendable candidates; the rows to hand to the queue after the commit."""
    done: list[ResendCandidate] = []
    pending: list[ledger.PendingReport] = []
    for candidate in plan.sendable:
        report, customer = candidate.report, candidate.customer
        assert customer is not None
        if candidate.action is ResendAction.SAME_IDENTIFIER:
            report.status = ReportStatus.PENDING.value
            report.key_generation = report.key_generation + 1
            report.stripe_customer_id = customer
            report.stale_check_waived = plan.selection.without_stripe_check
            row = report
        else:
            row = await _replacement(session, report, customer, now)
            report.replaced_by_id = row.id
        done.append(
            ResendCandidate(report, customer, candidate.action, new_identifier=row.identifier)
        )
        pending.append(ledger.pending_report(row))
    await session.flush()
    return done, pending


async def _replacement(
    session: AsyncSession, report: MeterReport, customer: str, now: datetime
) -> MeterReport:
    window_row_id = report.corrects_id if report.corrects_id is not None else report.id
    number = await repository.correction_count(session, window_row_id) + 1
    row = MeterReport(
        organization_id=report.organization_id,
        event_name=report.event_name,
        window_start=report.window_start,
        window_end=report.window_end,
        value=report.value,
        stripe_customer_id=customer,
        identifier=correction_identifier(report.identifier, number, "s"),
        source=ReportSource.CORRECTION.value,
        status=ReportStatus.PENDING.value,
        corrects_id=window_row_id,
        correction_reason=(
            f"re-send of {report.identifier}: Stripe reported {report.stripe_error_code} "
            "after accepting it"
        ),
        attempts=0,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row
