"""Reading meters and their event summaries, and cancelling a meter event: what
reconciliation and corrections ask of Stripe. Every call waits for the account's budget first.

Stripe facts (docs: api/billing/meter-event-summary/list, api/billing/meter-event-adjustment):
summaries need `customer`, `start_time` (inclusive) and `end_time` (exclusive); with
`value_grouping_window=hour` both must be whole hours, and each summary is the meter's formula
over the events whose timestamp lies in that hour. The list pages with `limit` (at most 100),
`has_more` and `starting_after`. A cancel (`type=cancel`, `event_name`,
`cancel[identifier]`) is accepted only within 24 h of Stripe receiving the event.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import stripe

from sensor_billing.errors import ConfigurationError, StripeUnavailableError
from sensor_billing.jobs.registry import METER_EVENT_NAMES
from sensor_billing.stripe_api.meter_events import map_stripe_error

Throttle = Callable[[], Awaitable[None]]

SUMMARY_PAGE_SIZE = 100  # Stripe's maximum `limit`
HOUR_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class MeterInfo:
    id: str
    event_name: str
    formula: str  # sum, count or last


@dataclass(frozen=True, slots=True)
class HourSummary:
    start: datetime
    end: datetime
    value: Decimal


async def configured_meters(
    client: stripe.StripeClient, throttle: Throttle, ids: dict[str, str]
) -> dict[str, MeterInfo]:
    """The meters whose ids the settings name (STRIPE_METER_<EVENT NAME>), each checked to be
    active and to count the event name it is set for."""
    meters: dict[str, MeterInfo] = {}
    for event_name, meter_id in ids.items():
        variable = f"STRIPE_METER_{event_name.upper()}"
        await throttle()
        try:
            meter = await client.v1.billing.meters.retrieve_async(meter_id)
        except stripe.InvalidRequestError as error:
            raise ConfigurationError(
                f"{variable}={meter_id}: Stripe has no such meter ({error.user_message})"
            ) from error
        except stripe.StripeError as error:
            raise map_stripe_error(error) from error
        if meter.event_name != event_name or meter.status != "active":
            raise ConfigurationError(
                f"{variable}={meter_id} is the {meter.status} meter of {meter.event_name!r}, "
                f"not an active meter of {event_name!r}: put the id `sensor-billing stripe "
                "setup` prints"
            )
        meters[event_name] = MeterInfo(meter.id, event_name, meter.default_aggregation.formula)
    return meters


async def active_meters(client: stripe.StripeClient, throttle: Throttle) -> dict[str, MeterInfo]:
    """Active meters by event name (as the set-up finds them, stripe_api/setup.py)."""
    meters: dict[str, MeterInfo] = {}
    params: dict[str, object] = {"status": "active", "limit": 100}
    try:
        while True:
            await throttle()
            page = await client.v1.billing.meters.list_async(params)  # type: ignore[arg-type]
            for meter in page.data:
                meters.setdefault(
                    meter.event_name,
                    MeterInfo(meter.id, meter.event_name, meter.default_aggregation.formula),
                )
            if not page.has_more or not page.data:
                return meters
            params = {**params, "starting_after": page.data[-1].id}
    except stripe.StripeError as error:
        raise map_stripe_error(error) from error


async def meters_by_event_name(
    client: stripe.StripeClient, throttle: Throttle, configured_ids: dict[str, str]
) -> dict[str, MeterInfo]:
    """The meter of each event name: those the settings name (checked), the rest found among
    the active meters (only listed when the settings do not name both)."""
    meters = await configured_meters(client, throttle, configured_ids)
    if len(meters) < len(METER_EVENT_NAMES):
        meters = await active_meters(client, throttle) | meters
    return meters


async def hourly_summaries(
    client: stripe.StripeClient,
    throttle: Throttle,
    *,
    meter_id: str,
    customer: str,
    start: datetime,
    end: datetime,
) -> list[HourSummary]:
    """One summary per hour in [start, end) (whole hours), oldest first, all pages read."""
    params: dict[str, object] = {
        "customer": customer,
        "start_time": int(start.timestamp()),
        "end_time": int(end.timestamp()),
        "value_grouping_window": "hour",
        "limit": SUMMARY_PAGE_SIZE,
    }
    summaries: list[HourSummary] = []
    try:
        while True:
            await throttle()
            page = await client.v1.billing.meters.event_summaries.list_async(
                meter_id,
                params,  # type: ignore[arg-type]
            )
            for summary in page.data:
                summaries.append(
                    HourSummary(
                        datetime.fromtimestamp(summary.start_time, UTC),
                        datetime.fromtimestamp(summary.end_time, UTC),
                        Decimal(str(summary.aggregated_value)),
                    )
                )
            if not page.has_more or not page.data:
                break
            params = {**params, "starting_after": page.data[-1].id}
    except stripe.StripeError as error:
        raise map_stripe_error(error) from error
    return sorted(summaries, key=lambda summary: summary.start)


async def cancel_meter_event(
    client: stripe.StripeClient, throttle: Throttle, *, event_name: str, identifier: str
) -> None:
    """Withdraw a recorded event. Raises `StripeRefusedError` (e.g. older than 24 h, unknown
    identifier) or `StripeUnavailableError`.

    The first call uses the identifier's own key, so a command retried after a crash gets
    Stripe's saved success back (docs: api/idempotent_requests). Stripe also keeps a 5xx under
    its key and answers every later call with that key with it for 24 h (STRIPE.md), which
    would block the correction for a day: after a 5xx the cancel is sent once more under a key
    of its own. Cancelling an event twice leaves it cancelled (the second cancel succeeds)."""
    key = f"meter-event-cancel-{identifier}"
    try:
        await _cancel(client, throttle, event_name, identifier, key)
    except StripeUnavailableError as error:
        if error.status is None or error.status < 500:
            raise
        await _cancel(client, throttle, event_name, identifier, f"{key}.{uuid.uuid4().hex}")


async def _cancel(
    client: stripe.StripeClient, throttle: Throttle, event_name: str, identifier: str, key: str
) -> None:
    await throttle()
    try:
        await client.v1.billing.meter_event_adjustments.create_async(
            {"type": "cancel", "event_name": event_name, "cancel": {"identifier": identifier}},
            {"idempotency_key": key},
        )
    except stripe.StripeError as error:
        raise map_stripe_error(error) from error
