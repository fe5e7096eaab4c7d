"""Before a row goes out more than a day after it could first have been sent: does Stripe
already count it?

Stripe refuses a second event with the same identifier "within a rolling window of at least
24 hours" and accepts it again after that (STRIPE.md). Within the window, the identifier makes
a repeated send harmless. A row pending for longer may have been sent already: a call Stripe
recorded whose answer was lost (a timeout, a cut connection, a worker killed mid-call, a
stream batch whose answer never came), after which Stripe, PostgreSQL or the worker was away
for a day. Sent again then, its usage would count twice, and only a reconcile would show it.

So the send path (`reporter.report_usage`, which every job takes, the sweep's revived jobs
included) calls this first for every row, and for a row written more than `STALE_AFTER` ago
reads Stripe's summary of the hour its event falls in
(`GET /v1/billing/meters/{id}/event_summaries`, `value_grouping_window=hour`) and compares it
with what the ledger knows of that hour. The v2 stream takes no such rows (their jobs do).
Stripe aggregates meter events asynchronously, "so the meter event summaries provide an
eventually consistent view of the reported usage" (docs: api/billing/meter-event-summary): an
event recorded a day ago is in its summary, one recorded in the last hour may not be yet.

What "the usage is there" means:

- `sum` (`temperature_readings`): the hour's value is the sum of the counted events in it. The
  ledger's other rows of that hour (same customer and meter) are known to count when sent more
  than `SETTLED_AFTER` ago without a Stripe error; pending ones, and ones sent more recently,
  may or may not count. The row is sent when the hour holds exactly the known rows' usage
  (this row's is not there: were it recorded a day ago, it would be aggregated). It is marked
  sent when the hour holds the known usage plus this row's value, with no uncertain row in the
  hour, or plus this row's and every uncertain row's. Anything else (more than the ledger can
  explain: another producer, a duplicate; or less: an event cancelled or refused elsewhere)
  does not tell whether this row's value is in it: the row is failed for a person, with
  both numbers, and nothing is sent.
- `last` (`active_sensors`): the hour's value is its newest counted event's. When it equals
  this row's value the row is marked sent: either the event is there, or an event of that
  value is, and a second event with the same timestamp and value could not change what the
  meter bills. Otherwise it is sent: if a copy were there, a later event of the hour has
  already replaced it, and another copy changes nothing either.
- `count`: as `sum`, each event worth 1.

Each outcome is counted in `sensor_billing_stale_resend_checks_total{decision}`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import stripe
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sensor_billing.db.schema import ReportSource, ReportStatus
from sensor_billing.errors import ConfigurationError, StripeRefusedError, StripeUnavailableError
from sensor_billing.metering import repository
from sensor_billing.metering.reporter import ReportResult, StaleCheck, Verdict
from sensor_billing.metering.repository import HourNeighbour
from sensor_billing.metering.send_repository import ReportForSend
from sensor_billing.metering.windows import floor_to_window
from sensor_billing.observability.metrics import record_stale_check
from sensor_billing.stripe_api.meters import MeterInfo, hourly_summaries, meters_by_event_name

logger = logging.getLogger("sensor_billing.metering")

HOUR = timedelta(hours=1)
# Stripe keeps an identifier at least 24 h; an hour less leaves room for the two clocks.
STALE_AFTER = timedelta(hours=23)
# A row sent this long ago is in Stripe's summary if Stripe counts it (asynchronous
# aggregation; not a documented figure, a margin).
SETTLED_AFTER = timedelta(hours=1)

Throttle = Callable[[], Awaitable[None]]


class Decision(enum.StrEnum):
    SEND = "send"  # Stripe does not have this row's usage
    COUNTED = "counted"  # Stripe has it: mark the row sent without a call
    PERSON = "person"  # cannot tell: failed, for a person


@dataclass(frozen=True, slots=True)
class Judgement:
    decision: Decision
    detail: str


def first_sendable_at(row: ReportForSend) -> datetime | None:
    """The earliest moment a send of the row can have happened. Window and correction rows
    are written before any send (the outbox); a row for another producer's job is committed
    just before its first send, and its job's own time (its timestamp, the window's last
    second) bounds that too."""
    if row.created_at is None:
        return None
    if row.source == ReportSource.JOB:
        return min(row.created_at, row.window_end - timedelta(seconds=1))
    return row.created_at


def is_stale(row: ReportForSend, now: datetime) -> bool:
    if row.stale_check_waived:  # an operator checked by hand (`usage resend`)
        return False
    since = first_sendable_at(row)
    return since is not None and now - since > STALE_AFTER


def judge(
    formula: str,
    stripe_value: Decimal,
    value: int,
    neighbours: list[HourNeighbour],
    *,
    hour: datetime,
    now: datetime,
) -> Judgement:
    """Whether Stripe's summary of the hour holds this row's value (the module's rules)."""
    worth = (lambda v: 1) if formula == "count" else (lambda v: v)
    if formula == "last":
        if stripe_value == value:
            return Judgement(
                Decision.COUNTED,
                f"Stripe's hour already ends at this row's value {value}",
            )
        return Judgement(
            Decision.SEND, f"Stripe's hour ends at {stripe_value}, not this row's {value}"
        )
    known = Decimal(0)
    uncertain = Decimal(0)
    uncertain_rows = 0
    for row in neighbours:
        if row.status == ReportStatus.PENDING or (
            row.status == ReportStatus.SENT
            and row.stripe_error_code is None
            and (row.sent_at is None or now - row.sent_at < SETTLED_AFTER)
        ):
            uncertain += worth(row.value)
            uncertain_rows += 1
        elif row.status == ReportStatus.SENT and row.stripe_error_code is None:
            known += worth(row.value)
    mine = Decimal(worth(value))
    explained = f"the ledger's other rows there account for {known}"
    if uncertain_rows:
        explained += f", and {uncertain_rows} more row(s) worth {uncertain} may"
    if stripe_value == known:
        return Judgement(
            Decision.SEND, f"Stripe's hour holds {stripe_value}: {explained}, without this row"
        )
    if stripe_value == known + mine + uncertain:
        return Judgement(
            Decision.COUNTED,
            f"Stripe's hour holds {stripe_value}: {explained}, and this row's {mine}",
        )
    return Judgement(
        Decision.PERSON,
        f"sent more than {int(STALE_AFTER.total_seconds() // 3600)} h after it could first have "
        f"been, when Stripe may no longer know its identifier, and Stripe's hour "
        f"{hour.isoformat()} holds {stripe_value}: {explained}, this row {mine}; whether Stripe "
        "already "
        "counts this row cannot be told, so it was not sent (compare with `sensor-billing "
        "reconcile`, then `sensor-billing usage resend`)",
    )


HourReader = Callable[[str, str, datetime], Awaitable[tuple[str, Decimal]]]


class StripeHourSummaries:
    """Stripe's summary of one hour of one customer's meter: (the meter's formula, value).
    Meters are looked up once (by STRIPE_METER_* or event name) and kept."""

    def __init__(
        self, client: stripe.StripeClient, throttle: Throttle, configured_ids: dict[str, str]
    ) -> None:
        self._client = client
        self._throttle = throttle
        self._configured_ids = configured_ids
        self._meters: dict[str, MeterInfo] | None = None

    async def __call__(self, event_name: str, customer: str, hour: datetime) -> tuple[str, Decimal]:
        if self._meters is None or event_name not in self._meters:
            self._meters = await meters_by_event_name(
                self._client, self._throttle, self._configured_ids
            )
        meter = self._meters.get(event_name)
        if meter is None:
            raise ConfigurationError(f"Stripe has no active meter for {event_name}")
        summaries = await hourly_summaries(
            self._client,
            self._throttle,
            meter_id=meter.id,
            customer=customer,
            start=hour,
            end=hour + HOUR,
        )
        value = sum((summary.value for summary in summaries), Decimal(0))
        return meter.formula, value


def stale_check(read_hour: HourReader, engine: AsyncEngine) -> StaleCheck:
    """What `report_usage` calls before every send: None to go on and send; a result when the
    row is stale and Stripe's summary settled it (marked sent, or failed for a person). For a
    stale row, Stripe is asked first; then the ledger's other rows of the hour are read and the
    verdict written in a transaction of its own on `engine`, committed before this returns
    (the claim holds the row's pair meanwhile). A fresh row costs nothing."""

    async def check(row: ReportForSend, now: datetime) -> ReportResult | None:
        if not is_stale(row, now):
            return None
        assert row.stripe_customer_id is not None  # checked by the caller
        assert row.organization_id is not None
        hour = floor_to_window(row.window_end - timedelta(seconds=1), HOUR)
        try:
            formula, stripe_value = await read_hour(row.event_name, row.stripe_customer_id, hour)
        except StripeUnavailableError as error:
            return ReportResult(Verdict.RETRY, f"reading Stripe's summary first: {error}")
        except (StripeRefusedError, ConfigurationError) as error:
            judgement = Judgement(Decision.PERSON, f"Stripe's summary could not be read: {error}")
            async with engine.begin() as connection:
                return await _settle(connection, row, judgement, now)
        async with engine.begin() as connection:
            neighbours = await repository.rows_in_hour(
                connection,
                organization_id=row.organization_id,
                customer=row.stripe_customer_id,
                event_name=row.event_name,
                hour=hour,
                except_id=row.id,
            )
            judgement = judge(formula, stripe_value, row.value, neighbours, hour=hour, now=now)
            return await _settle(connection, row, judgement, now)

    return check


async def _settle(
    connection: AsyncConnection, row: ReportForSend, judgement: Judgement, now: datetime
) -> ReportResult | None:
    detail = judgement.detail
    record_stale_check(judgement.decision)
    logger.info("meter report %s pending for over a day: %s", row.identifier, detail)
    if judgement.decision is Decision.SEND:
        return None
    if judgement.decision is Decision.COUNTED:
        await repository.mark_sent(connection, [row.id], now)
        return ReportResult(Verdict.ALREADY_SENT, detail)
    await repository.update_report(
        connection, row.id, status=ReportStatus.FAILED.value, last_error=detail
    )
    return ReportResult(Verdict.FAILED, detail)
