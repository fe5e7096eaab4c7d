"""Correcting a sent ledger row: cancel and replace within 24 h, compensate after. Nothing
here commits; the caller's unit of work does, after Stripe answered.

A row is corrected by writing the value it should have had. What is sent depends on time:

- **Within 24 h of `sent_at`** (less a margin, see `CANCEL_MARGIN`), while the window's
  timestamp is still one Stripe accepts (35 days, less the ledger's margin), Stripe can withdraw
  the event (`POST /v1/billing/meter_event_adjustments`, `type=cancel`; STRIPE.md). The live
  row is cancelled in Stripe first; only when Stripe agreed is it marked `cancelled` and a
  replacement row (same window, the right value, identifier `<original>.r<n>`) inserted as
  `pending`, for the normal `meter:report` job path to send.
- **After that**, the event stays. A compensating row goes into the newest window that has
  ended (its event timestamp, the window's last second, is already past, so Stripe takes
  it): for `sum`, the difference (negative allowed); for `last`, see `_late_last_value`.

Every correction row has `source = correction` and `corrects_id` = the window's own row, so
the window's billed value is derivable from the ledger alone. A correction is idempotent:
when the rows already add up to the value asked for, nothing is written; the window's row is
locked for the whole correction, so two runs at once are serialised. If Stripe refuses the
cancel, the exception leaves the transaction with nothing written.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.db.schema import MeterReport, ReportSource, ReportStatus
from sensor_billing.errors import CorrectionNotPossibleError, InvalidInputError
from sensor_billing.jobs.registry import BIGINT_MAX
from sensor_billing.metering import corrections_repository as repository
from sensor_billing.metering import repository as ledger
from sensor_billing.metering.windows import (
    event_timestamp,
    floor_to_window,
    oldest_sendable_timestamp,
)

# Stripe cancels events "within 24 hours" of receiving them (meter_event_adjustments). Our
# `sent_at` is stamped just after Stripe answered, so it can be a little later than Stripe's
# own clock; this margin keeps the cancel path clear of Stripe's edge.
CANCEL_WINDOW = timedelta(hours=24)
CANCEL_MARGIN = timedelta(minutes=15)

# Which meters sum their events and which keep the last one (stripe_api/setup.py).
LAST_VALUE_METERS = frozenset({"active_sensors"})

Canceller = Callable[[str, str], Awaitable[None]]  # (event_name, identifier)


class CorrectionKind(enum.StrEnum):
    UNCHANGED = "unchanged"  # the ledger already bills the value asked for
    REPLACEMENT = "replacement"  # cancelled in Stripe, replaced in the same window
    COMPENSATION = "compensation"  # an extra event in the newest ended window
    RECORDED = "recorded"  # `last` meter, superseded window: recorded, nothing to send


@dataclass(frozen=True, slots=True)
class CorrectionRequest:
    organization_id: uuid.UUID
    event_name: str
    window_start: datetime
    value: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CorrectionResult:
    kind: CorrectionKind
    original_identifier: str
    billed_before: int  # what the ledger billed for the window before this correction
    value: int
    identifier: str | None = None  # the new row's, if one was written
    sent_value: int | None = None  # what the new row sends (a difference for `sum`)
    cancelled_identifier: str | None = None
    # A new pending row to hand to the queue after the commit (the sweep would find it too).
    pending: ledger.PendingReport | None = None


def correction_identifier(original: str, number: int, kind: str) -> str:
    """`<original>.<kind><n>`: deterministic, so a retried correction cannot add a second
    row (unique identifier), at most 100 characters (Stripe), and starting with `sb.` so the
    worker looks it up in the ledger (reporter.WINDOW_IDENTIFIER_PREFIX)."""
    identifier = f"{original}.{kind}{number}"
    if len(identifier) <= 100 and identifier.startswith("sb."):
        return identifier
    digest = hashlib.sha256(original.encode()).hexdigest()[:64]
    return f"sb.fix.{digest}.{kind}{number}"


def billed_value(event_name: str, original: MeterReport, corrections: list[MeterReport]) -> int:
    """What the ledger has Stripe bill for the window: sent and pending rows count,
    cancelled, failed and skipped ones do not, nor a row Stripe reported invalid that a
    re-send replaced (`usage resend`: the re-send counts instead). For `sum`, their total;
    for `last`, the newest such row's value (a compensation for `last` carries an absolute
    value)."""
    live = [
        row
        for row in [original, *corrections]
        if row.status in (ReportStatus.SENT, ReportStatus.PENDING) and row.replaced_by_id is None
    ]
    if event_name in LAST_VALUE_METERS:
        recorded = [r for r in corrections if r.status == ReportStatus.SKIPPED and r.skip_reason]
        newest = max([*live, *recorded], key=lambda row: row.id, default=None)
        return newest.value if newest is not None else 0
    return sum(row.value for row in live)


async def correct_usage(
    session: AsyncSession,
    request: CorrectionRequest,
    *,
    window: timedelta,
    now: datetime,
    cancel: Canceller,
) -> CorrectionResult:
    """Make the ledger, and Stripe, bill `request.value` for the window. See the module."""
    if request.value < 0:
        raise InvalidInputError("--value must be at least 0: it is the window's true value")
    if request.value > BIGINT_MAX:
        # Checked before Stripe is asked to cancel: the ledger (bigint) would refuse the
        # replacement only after the event was withdrawn, leaving the window billed nowhere.
        raise InvalidInputError(f"--value must be at most {BIGINT_MAX}")
    original = await repository.window_report_for_update(
        session, request.organization_id, request.event_name, request.window_start
    )
    if original is None:
        # The row is looked up by its start, not by the current grid: rows closed before
        # METER_WINDOW_SECONDS changed (and the short window at the change) start off it.
        if floor_to_window(request.window_start, window) != request.window_start:
            raise InvalidInputError(
                f"--window {request.window_start.isoformat()} is not the start of a "
                f"{int(window.total_seconds())} s window, nor of a ledger row"
            )
        raise InvalidInputError(
            f"no ledger row for organization {request.organization_id}, meter "
            f"{request.event_name}, window {request.window_start.isoformat()}"
        )
    corrections = await repository.corrections_of(session, original.id)
    family = [original, *corrections]
    before = billed_value(request.event_name, original, corrections)
    result = CorrectionResult(CorrectionKind.UNCHANGED, original.identifier, before, request.value)
    if any(row.status == ReportStatus.PENDING for row in family):
        if before == request.value:
            return result
        raise CorrectionNotPossibleError(
            f"{original.identifier} has a report that is still pending; wait until the worker "
            "has sent it (sensor-billing usage ledger), then correct it"
        )
    if original.status not in (ReportStatus.SENT, ReportStatus.CANCELLED):
        raise CorrectionNotPossibleError(
            f"{original.identifier} is {original.status}, not sent: Stripe bills nothing for "
            "it, so there is nothing to correct (re-measure or re-send it instead)"
        )
    invalid = [
        r
        for r in family
        if r.status == ReportStatus.SENT and r.stripe_error_code and r.replaced_by_id is None
    ]
    if invalid:
        # Stripe counts none of it, so the ledger's value is not what Stripe bills: a
        # difference (or "nothing to do") computed from it would bill too little.
        raise CorrectionNotPossibleError(
            f"{invalid[0].identifier} was reported invalid by Stripe "
            f"({invalid[0].stripe_error_code}): it counts on no invoice, so it cannot be "
            "corrected by difference; fix the cause and re-send it as a new report "
            "(docs/operations.md, Meter errors reported by Stripe)"
        )
    if before == request.value:
        return result

    number = len(corrections) + 1
    live = _cancellable(family, now)
    if live is not None:
        assert live.stripe_customer_id is not None  # a sent row has a customer
        await ledger.lock_customer_meter(session, live.stripe_customer_id, live.event_name)
        # Stripe first: if it refuses, this raises and nothing below is written.
        await cancel(live.event_name, live.identifier)
        live.status = ReportStatus.CANCELLED
        replacement = _correction_row(
            original,
            correction_identifier(original.identifier, number, "r"),
            request,
            value=request.value,
            window_start=original.window_start,
            window_end=original.window_end,
            now=now,
        )
        repository.add_report(session, replacement)
        await session.flush()
        return CorrectionResult(
            CorrectionKind.REPLACEMENT,
            original.identifier,
            before,
            request.value,
            identifier=replacement.identifier,
            sent_value=replacement.value,
            cancelled_identifier=live.identifier,
            pending=ledger.pending_report(replacement),
        )

    window_end = floor_to_window(now, window)
    identifier = correction_identifier(original.identifier, number, "c")
    if request.event_name in LAST_VALUE_METERS:
        sent_value, superseded = await _late_last_value(session, original, request.value)
    else:
        sent_value, superseded = request.value - before, False
    compensation = _correction_row(
        original,
        identifier,
        request,
        value=sent_value,
        window_start=window_end - window,
        window_end=window_end,
        now=now,
    )
    if superseded:
        compensation.status = ReportStatus.SKIPPED
        compensation.skip_reason = (
            "correction of a `last` meter in a window a later report supersedes: Stripe bills "
            "the newest value, so nothing is sent"
        )
    repository.add_report(session, compensation)
    await session.flush()
    return CorrectionResult(
        CorrectionKind.RECORDED if superseded else CorrectionKind.COMPENSATION,
        original.identifier,
        before,
        request.value,
        identifier=identifier,
        sent_value=None if superseded else sent_value,
        pending=None if superseded else ledger.pending_report(compensation),
    )


def _cancellable(family: list[MeterReport], now: datetime) -> MeterReport | None:
    """The row Stripe can still withdraw: the newest sent row of the window itself (the
    original or a replacement), sent recently enough, and no compensation sent since (a
    compensation is a difference against it, so cancelling under it would double-correct).
    Its window must still be sendable: the replacement carries the window's timestamp, and
    one Stripe no longer takes (35 days) would leave the window cancelled and unbilled."""
    if any(row.window_start != family[0].window_start for row in family):
        return None
    sent = [row for row in family if row.status == ReportStatus.SENT and row.replaced_by_id is None]
    if not sent:
        return None
    newest = max(sent, key=lambda row: row.id)
    if newest.sent_at is None or now >= newest.sent_at + CANCEL_WINDOW - CANCEL_MARGIN:
        return None
    if event_timestamp(newest.window_end) < oldest_sendable_timestamp(now).timestamp():
        return None
    return newest


async def _late_last_value(
    session: AsyncSession, original: MeterReport, value: int
) -> tuple[int, bool]:
    """A `last` meter bills the newest value of the billing period. A difference means
    nothing to it, so a late correction carries the absolute value. When a later window has
    a report, that report's value is already what Stripe bills: sending the corrected value
    now would overwrite the current true gauge, so the correction is only recorded (skipped).
    Otherwise (the organization stopped reporting), the corrected value is sent as the newest
    event."""
    return value, await repository.has_later_report(session, original)


def _correction_row(
    original: MeterReport,
    identifier: str,
    request: CorrectionRequest,
    *,
    value: int,
    window_start: datetime,
    window_end: datetime,
    now: datetime,
) -> MeterReport:
    return MeterReport(
        organization_id=original.organization_id,
        event_name=original.event_name,
        window_start=window_start,
        window_end=window_end,
        value=value,
        stripe_customer_id=original.stripe_customer_id,
        identifier=identifier,
        source=ReportSource.CORRECTION.value,
        status=ReportStatus.PENDING.value,
        corrects_id=original.id,
        correction_reason=request.reason,
        attempts=0,
        # Set here rather than by the database so the queue hand-off can read it unflushed.
        created_at=now,
    )
