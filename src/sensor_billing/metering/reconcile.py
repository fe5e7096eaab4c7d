"""Reconciliation: what the ledger says was sent against what Stripe's meters hold.

Stripe's event summaries are read per customer and meter with `value_grouping_window=hour`
(one value per hour, the meter's formula over the events timestamped in it). Ledger rows are
bucketed the same way, by their event timestamp (the window's last second), so the comparison
is exact for any window length that divides a day: a 1 h window is one hour; a longer window
lands in the hour holding its last second; several shorter windows share an hour.

- `sum`: per hour, Stripe's sum against the sum of the ledger's sent rows (originals,
  replacements and compensations alike); over the period, the totals.
- `last`: per hour, Stripe's value against the ledger's newest sent row in that hour; over the
  period, the newest hour the ledger has a value for.

Only `sent` rows are expected in Stripe. An hour holding a `pending` row is reported as
unsent and left out of the drift (it may or may not have reached Stripe yet). Cancelled,
failed and skipped rows are expected to be absent.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import stripe

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.errors import ConfigurationError, InvalidInputError
from sensor_billing.jobs.registry import METER_EVENT_NAMES
from sensor_billing.metering import corrections_repository
from sensor_billing.metering.corrections_repository import LedgerEvent
from sensor_billing.metering.windows import floor_to_window
from sensor_billing.stripe_api.meters import (
    HourSummary,
    MeterInfo,
    hourly_summaries,
    meters_by_event_name,
)

HOUR = timedelta(hours=1)

# (meter id, customer, start, end) -> hourly summaries, oldest first, all pages.
SummaryFetcher = Callable[[str, str, datetime, datetime], Awaitable[list[HourSummary]]]
Throttle = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime


def check_period(start: datetime, end: datetime) -> Period:
    """Stripe groups by whole UTC hours and wants the range on hour boundaries."""
    if start >= end:
        raise InvalidInputError(
            f"--period start ({start.isoformat()}) must be before its end ({end.isoformat()})"
        )
    for name, moment in (("start", start), ("end", end)):
        if floor_to_window(moment, HOUR) != moment:
            raise InvalidInputError(
                f"--period {name} {moment.isoformat()} is not on a whole UTC hour "
                "(Stripe's hourly summaries need hour boundaries)"
            )
    return Period(start, end)


@dataclass(frozen=True, slots=True)
class WindowDrift:
    organization_id: uuid.UUID
    customer: str
    event_name: str
    start: datetime
    end: datetime
    ledger: Decimal
    stripe: Decimal

    @property
    def drift(self) -> Decimal:
        return self.stripe - self.ledger


@dataclass(frozen=True, slots=True)
class UnsentWindow:
    organization_id: uuid.UUID
    event_name: str
    start: datetime
    pending_rows: int
    pending_value: int


@dataclass(slots=True)
class MeterReconciliation:
    organization_id: uuid.UUID
    customer: str
    event_name: str
    formula: str
    ledger: Decimal = Decimal(0)
    stripe: Decimal = Decimal(0)
    windows_compared: int = 0
    drifts: list[WindowDrift] = field(default_factory=list)
    unsent: list[UnsentWindow] = field(default_factory=list)

    @property
    def drift(self) -> Decimal:
        return self.stripe - self.ledger

    @property
    def has_drift(self) -> bool:
        return bool(self.drifts) or self.drift != 0


@dataclass(frozen=True, slots=True)
class Reconciliation:
    period: Period
    meters: list[MeterReconciliation]

    @property
    def has_drift(self) -> bool:
        return any(meter.has_drift for meter in self.meters)

    @property
    def drifts(self) -> list[WindowDrift]:
        return [drift for meter in self.meters for drift in meter.drifts]

    @property
    def unsent(self) -> list[UnsentWindow]:
        return [window for meter in self.meters for window in meter.unsent]


async def reconcile_period(
    sessions: SessionFactory,
    client: stripe.StripeClient,
    throttle: Throttle,
    *,
    configured_meter_ids: dict[str, str],
    period: Period,
    organization_id: uuid.UUID | None = None,
) -> Reconciliation:
    """`sensor-billing reconcile` and the worker's daily check: the ledger's rows of the
    period (read in one transaction) against Stripe's summaries, every Stripe call through
    `throttle` (the account-wide budget the workers share)."""
    async with unit_of_work(sessions) as session:
        events = await corrections_repository.ledger_events(
            session, start=period.start, end=period.end, organization_id=organization_id
        )
        metered = await corrections_repository.metered_customers(session, organization_id)
    meters = await meters_by_event_name(client, throttle, configured_meter_ids)

    async def fetch(
        meter_id: str, customer: str, since: datetime, until: datetime
    ) -> list[HourSummary]:
        return await hourly_summaries(
            client, throttle, meter_id=meter_id, customer=customer, start=since, end=until
        )

    return await reconcile(period, events, metered, meters, fetch)


def pairs_to_check(
    events: Iterable[LedgerEvent], metered: Iterable[tuple[uuid.UUID, str]]
) -> list[tuple[uuid.UUID, str]]:
    """Every (organization, customer) the ledger reported for in the period, and every
    metered organization's current customer (Stripe may hold events the ledger lacks)."""
    pairs = {(event.organization_id, event.customer) for event in events}
    pairs.update(metered)
    return sorted(pairs, key=lambda pair: (str(pair[0]), pair[1]))


async def reconcile(
    period: Period,
    events: list[LedgerEvent],
    metered: list[tuple[uuid.UUID, str]],
    meters: dict[str, MeterInfo],
    fetch: SummaryFetcher,
) -> Reconciliation:
    missing = [name for name in METER_EVENT_NAMES if name not in meters]
    if missing:
        raise ConfigurationError(
            f"Stripe has no active meter for {', '.join(missing)}: run `sensor-billing stripe "
            "setup` (or check STRIPE_API_KEY points at the right account)"
        )
    by_key: dict[tuple[uuid.UUID, str, str], list[LedgerEvent]] = defaultdict(list)
    for event in events:
        by_key[(event.organization_id, event.customer, event.event_name)].append(event)
    results = []
    for organization_id, customer in pairs_to_check(events, metered):
        for event_name in METER_EVENT_NAMES:
            meter = meters[event_name]
            summaries = await fetch(meter.id, customer, period.start, period.end)
            results.append(
                compare_meter(
                    organization_id,
                    customer,
                    meter,
                    by_key.get((organization_id, customer, event_name), []),
                    summaries,
                )
            )
    return Reconciliation(period, results)


def compare_meter(
    organization_id: uuid.UUID,
    customer: str,
    meter: MeterInfo,
    events: list[LedgerEvent],
    summaries: list[HourSummary],
) -> MeterReconciliation:
    result = MeterReconciliation(organization_id, customer, meter.event_name, meter.formula)
    hours: dict[datetime, list[LedgerEvent]] = defaultdict(list)
    for event in events:
        hours[floor_to_window(event.timestamp, HOUR)].append(event)
    stripe_by_hour = {summary.start: (summary.end, summary.value) for summary in summaries}
    for hour in sorted(set(hours) | set(stripe_by_hour)):
        in_hour = hours.get(hour, [])
        end, stripe_value = stripe_by_hour.get(hour, (hour + HOUR, Decimal(0)))
        pending = [event for event in in_hour if event.status == "pending"]
        if pending:
            result.unsent.append(
                UnsentWindow(
                    organization_id,
                    meter.event_name,
                    hour,
                    len(pending),
                    sum(event.value for event in pending),
                )
            )
            continue
        ledger_value = _ledger_value(meter.formula, in_hour)
        result.windows_compared += 1
        if meter.formula == "last":
            if in_hour:
                result.ledger, result.stripe = ledger_value, stripe_value
        else:
            result.ledger += ledger_value
            result.stripe += stripe_value
        if ledger_value != stripe_value:
            result.drifts.append(
                WindowDrift(
                    organization_id,
                    customer,
                    meter.event_name,
                    hour,
                    end,
                    ledger_value,
                    stripe_value,
                )
            )
    return result


def _ledger_value(formula: str, events: list[LedgerEvent]) -> Decimal:
    if not events:
        return Decimal(0)
    if formula == "last":
        newest = max(events, key=lambda event: (event.timestamp, event.id))
        return Decimal(newest.value)
    if formula == "count":
        return Decimal(len(events))
    return Decimal(sum(event.value for event in events))
