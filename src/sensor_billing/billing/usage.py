"""An organization's usage so far: per meter, what the ledger holds for a billing period (sent,
pending, failed, and sent but reported invalid, separately) and, for the current period, what
Stripe's invoice preview says is due.

Two steps, so that no database connection is held while Stripe is asked: `read_usage` runs in
the request's unit of work, `attach_preview` after it. Where Stripe does not answer within the
timeout, or fails, the ledger's figures still answer and the preview says why it is missing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.billing.standing import PriceInfo, metered_prices
from sensor_billing.billing.standing_repository import organization_standing
from sensor_billing.errors import (
    InvalidParameterError,
    NoBillingPeriodError,
    NoSuchOrganizationError,
    StripeRefusedError,
    StripeUnavailableError,
)
from sensor_billing.jobs.registry import METER_EVENT_NAMES
from sensor_billing.metering.usage_repository import LedgerFigure, ledger_usage
from sensor_billing.stripe_api.invoices import InvoicePreview, preview_invoice
from sensor_billing.stripe_api.setup import METER_SPECS

logger = logging.getLogger("sensor_billing.billing.usage")

# A requested period is at most this long: a year, leap day included. It bounds the scan of an
# organization's ledger (1 h windows: about 17,500 rows).
MAX_PERIOD: Final = timedelta(days=366)
AGGREGATION: Final = {spec.event_name: spec.formula for spec in METER_SPECS}
FIGURES: Final = ("sent", "pending", "failed", "invalid")


@dataclass(frozen=True, slots=True)
class PeriodRequest:
    """`current` (the subscription's current period), or [start, end) as asked."""

    start: datetime | None = None
    end: datetime | None = None

    @property
    def current(self) -> bool:
        return self.start is None


def parse_moment(text: str, parameter: str) -> datetime:
    """An ISO 8601 time with an offset (`2026-11-01T00:00:00Z`), in UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidParameterError(
            f"query parameter {parameter}: {text!r} is not an ISO 8601 time "
            "(like 2026-11-01T00:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise InvalidParameterError(
            f"query parameter {parameter}: {text!r} has no UTC offset (add Z or +00:00)"
        )
    return moment.astimezone(UTC)


def period_request(period: str | None, start: str | None, end: str | None) -> PeriodRequest:
    """`period=current`, or `from` and `to`; nothing given means the current period."""
    if period is not None and period != "current":
        raise InvalidParameterError(
            f"query parameter period: only 'current' is known, not {period!r}"
        )
    if start is None and end is None:
        return PeriodRequest()
    if period is not None:
        raise InvalidParameterError("query parameters period and from/to exclude each other")
    if start is None or end is None:
        missing = "from" if start is None else "to"
        raise InvalidParameterError(
            f"query parameter {missing} is missing: from and to go together"
        )
    first, last = parse_moment(start, "from"), parse_moment(end, "to")
    if first >= last:
        raise InvalidParameterError(
            f"query parameter from ({first.isoformat()}) must be before to ({last.isoformat()})"
        )
    if last - first > MAX_PERIOD:
        raise InvalidParameterError(
            f"query parameters from and to span more than {MAX_PERIOD.days} days"
        )
    return PeriodRequest(first, last)


@dataclass(frozen=True, slots=True)
class Figure:
    rows: int
    value: int  # the meter's aggregation over the rows: their sum, or the newest one's value


@dataclass(frozen=True, slots=True)
class MeterUsage:
    event_name: str
    aggregation: str
    figures: dict[str, Figure]


PreviewStatus = Literal["available", "unavailable", "not_applicable"]


@dataclass(frozen=True, slots=True)
class PreviewOutcome:
    status: PreviewStatus
    reason: str | None = None
    message: str | None = None
    invoice: InvoicePreview | None = None


@dataclass(frozen=True, slots=True)
class UsageReport:
    organization_id: uuid.UUID
    period_start: datetime
    period_end: datetime
    current: bool
    meters: list[MeterUsage]
    preview: PreviewOutcome
    # For the preview: whom to ask about which subscription, and the subscription's prices
    # (which meter event each preview line bills).
    customer_id: str | None = None
    subscription_id: str | None = None
    prices: list[PriceInfo] = field(default_factory=list)


def meter_usage(figures: list[LedgerFigure]) -> list[MeterUsage]:
    found = {(figure.event_name, figure.figure): figure for figure in figures}
    meters = []
    for event_name in METER_EVENT_NAMES:
        aggregation = AGGREGATION[event_name]
        by_figure = {}
        for name in FIGURES:
            row = found.get((event_name, name))
            value = 0 if row is None else row.newest if aggregation == "last" else row.total
            by_figure[name] = Figure(row.rows if row else 0, value)
        meters.append(MeterUsage(event_name, aggregation, by_figure))
    return meters


async def read_usage(
    session: AsyncSession, organization_id: uuid.UUID, request: PeriodRequest
) -> UsageReport:
    """The ledger's part; the preview is `not_applicable` until `attach_preview` asks Stripe."""
    standing = await organization_standing(session, organization_id)
    if standing is None:
        raise NoSuchOrganizationError(f"no organization {organization_id}")
    if request.start is not None and request.end is not None:
        start, end = request.start, request.end
    elif standing.current_period_start is not None and standing.current_period_end is not None:
        start, end = standing.current_period_start, standing.current_period_end
    else:
        raise NoBillingPeriodError(
            f"organization {organization_id} has no subscription with a current period; "
            "ask for a period with from= and to="
        )
    figures = await ledger_usage(session, organization_id, start=start, end=end)
    return UsageReport(
        organization_id=organization_id,
        period_start=start,
        period_end=end,
        current=request.current,
        meters=meter_usage(figures),
        preview=PreviewOutcome(
            "not_applicable", "requested_period", "a preview covers only the current period"
        ),
        customer_id=standing.stripe_customer_id,
        subscription_id=standing.subscription_id,
        prices=await metered_prices(session, standing.metered_price_ids),
    )


async def attach_preview(
    report: UsageReport, client: stripe.StripeClient | None, *, wait_seconds: float
) -> UsageReport:
    """The report with Stripe's invoice preview for its current period, or with the reason
    there is none: never an error, the ledger's figures answer regardless."""
    if not report.current:
        return report
    return replace(report, preview=await _preview(report, client, wait_seconds))


async def _preview(
    report: UsageReport, client: stripe.StripeClient | None, wait_seconds: float
) -> PreviewOutcome:
    if client is None:
        return PreviewOutcome("unavailable", "stripe_not_configured", "STRIPE_API_KEY is not set")
    if report.customer_id is None or report.subscription_id is None:
        return PreviewOutcome("not_applicable", "no_subscription", "no subscription to preview")
    try:
        invoice = await asyncio.wait_for(
            preview_invoice(
                client, customer_id=report.customer_id, subscription_id=report.subscription_id
            ),
            wait_seconds,
        )
    except TimeoutError:
        outcome = PreviewOutcome(
            "unavailable", "stripe_timeout", f"Stripe did not answer within {wait_seconds:g} s"
        )
    except StripeUnavailableError as error:
        outcome = PreviewOutcome("unavailable", "stripe_unavailable", str(error))
    except StripeRefusedError as error:
        outcome = PreviewOutcome("unavailable", "stripe_refused", str(error))
    else:
        return PreviewOutcome("available", invoice=invoice)
    logger.warning(
        "invoice preview unavailable for organization %s: %s (%s)",
        report.organization_id,
        outcome.reason,
        outcome.message,
    )
    return outcome
