"""SQL for a customer's live subscriptions with metered prices, for a session (/ops, the CLI)
and for the driver (the webhook's transaction, `db.driver`). Nothing here writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, any_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.billing.service import TERMINAL_SUBSCRIPTION_STATUSES
from sensor_billing.db.driver import Driver, DriverStatement
from sensor_billing.db.schema import StripeSubscription


@dataclass(frozen=True, slots=True)
class MeteredSubscription:
    id: str
    status: str
    current_period_start: datetime | None
    metered_price_ids: tuple[str, ...]


# By the start of their current period (the mirror does not keep when each was made).
# Comparisons, not NOT IN: a list parameter would be expanded after compiling, which the
# driver's statement (compiled once) cannot do.
_live_metered = (
    select(
        StripeSubscription.id,
        StripeSubscription.status,
        StripeSubscription.current_period_start,
        StripeSubscription.metered_price_ids,
    )
    .where(
        and_(*(StripeSubscription.status != s for s in sorted(TERMINAL_SUBSCRIPTION_STATUSES))),
        func.cardinality(StripeSubscription.metered_price_ids) > 0,
    )
    .order_by(StripeSubscription.current_period_start.asc().nulls_last(), StripeSubscription.id)
)
LIVE_METERED = DriverStatement(
    _live_metered.add_columns(StripeSubscription.stripe_customer_id).where(
        StripeSubscription.stripe_customer_id == any_(bindparam("customer_ids"))
    )
)


def _subscription(row: Any) -> MeteredSubscription:
    return MeteredSubscription(row[0], row[1], row[2], tuple(row[3]))


async def live_metered_subscriptions(
    session: AsyncSession, customer_id: str
) -> list[MeteredSubscription]:
    query = _live_metered.where(StripeSubscription.stripe_customer_id == customer_id)
    rows = await session.execute(query)
    return [_subscription(row) for row in rows]


async def live_metered_subscriptions_on(
    connection: Driver, customer_ids: Sequence[str]
) -> dict[str, list[MeteredSubscription]]:
    """Of each customer, in the webhook's transaction on the driver: those that have any."""
    found: dict[str, list[MeteredSubscription]] = {}
    for row in await LIVE_METERED.fetch(connection, {"customer_ids": list(customer_ids)}):
        found.setdefault(row[4], []).append(_subscription(row))
    return found
