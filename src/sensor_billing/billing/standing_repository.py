"""SQL for an organization's billing standing: its customer, the subscription that decides its
entitlement, and when its past-due grace period started. One statement: the product asks this on
every page it gates. Nothing here commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Row,
    Select,
    Text,
    and_,
    any_,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.billing.entitlement import STATUS_RANK, UNKNOWN_STATUS_RANK
from sensor_billing.billing.repository import KnownPrice
from sensor_billing.db.schema import Organization, StripeInvoice, StripePrice, StripeSubscription


@dataclass(frozen=True, slots=True)
class OrganizationStanding:
    organization_id: uuid.UUID
    name: str
    stripe_customer_id: str | None
    customer_deleted: bool
    subscription_id: str | None
    status: str | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    metered_price_ids: tuple[str, ...]
    past_due_since: datetime | None


def standing_query(*, with_prices: bool = False) -> Select[Any]:
    """The standing of every organization (add a WHERE). `with_prices` adds, as a JSON array,
    the prices `stripe_prices` holds for the subscription's metered price ids."""
    subscription = (
        select(StripeSubscription)
        .where(StripeSubscription.stripe_customer_id == Organization.stripe_customer_id)
        .order_by(
            case(STATUS_RANK, value=StripeSubscription.status, else_=UNKNOWN_STATUS_RANK),
            StripeSubscription.current_period_start.desc().nulls_last(),
            StripeSubscription.last_event_created.desc(),
        )
        .limit(1)
        .lateral("subscription")
    )
    first_failure = (
        select(func.min(StripeInvoice.first_failed_at))
        .where(
            StripeInvoice.stripe_customer_id == subscription.c.stripe_customer_id,
            StripeInvoice.stripe_subscription_id == subscription.c.id,
            StripeInvoice.payment_status == "payment_failed",
        )
        .scalar_subquery()
    )
    past_due_since = case(
        # Until the failed invoice's event arrives, the event that made it past_due.
        (
            subscription.c.status == literal("past_due"),
            func.coalesce(first_failure, subscription.c.last_event_created),
        ),
        else_=None,
    )
    columns: list[Any] = [
        Organization.id,
        Organization.name,
        Organization.stripe_customer_id,
        Organization.stripe_customer_deleted_at.is_not(None),
        subscription.c.id,
        subscription.c.status,
        subscription.c.current_period_start,
        subscription.c.current_period_end,
        subscription.c.cancel_at_period_end,
        subscription.c.metered_price_ids,
        past_due_since,
    ]
    if with_prices:
        columns.append(_prices_json(subscription.c.metered_price_ids))
    return select(*columns).select_from(Organization).outerjoin(subscription, and_(true()))


def _prices_json(price_ids: Any) -> Any:
    # The amount as text: a JSON number would come back as a float.
    price = func.json_build_object(
        "id",
        StripePrice.id,
        "currency",
        StripePrice.currency,
        "unit_amount_decimal",
        cast(StripePrice.unit_amount_decimal, Text),
        "meter_id",
        StripePrice.meter_id,
        "lookup_key",
        StripePrice.lookup_key,
    )
    return select(func.json_agg(price)).where(StripePrice.id == any_(price_ids)).scalar_subquery()


def asyncpg_text(query: Select[Any]) -> str:
    """The statement as asyncpg takes it: its constants (the status ranks) written in, $1 the
    organization's id."""
    dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]  # unannotated in SQLAlchemy
    return str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


# Compiled once: the product asks this on every page it gates, and building (then looking up in
# SQLAlchemy's cache) a statement of this shape took more CPU than PostgreSQL takes to run it
# (py-spy on benchmarks/billing_read.py: a third of the endpoint's time went into building it,
# then a tenth into its cache key).
BILLING_BY_ID_SQL = asyncpg_text(
    standing_query(with_prices=True).where(Organization.id == literal_column("$1::uuid"))
)


async def organization_standing_and_prices(
    connection: Any, organization_id: uuid.UUID
) -> tuple[OrganizationStanding, list[KnownPrice]] | None:
    """The standing and the known prices of its subscription in one statement, on an asyncpg
    connection (`db.driver_connection`); None when there is no such organization."""
    row = await connection.fetchrow(BILLING_BY_ID_SQL, organization_id)
    if row is None:
        return None
    *standing, prices = tuple(row)
    known = [
        KnownPrice(
            id=price["id"],
            currency=price["currency"],
            unit_amount_decimal=(
                Decimal(price["unit_amount_decimal"])
                if price["unit_amount_decimal"] is not None
                else None
            ),
            meter_id=price["meter_id"],
            lookup_key=price["lookup_key"],
        )
        for price in (prices or [])
    ]
    return standing_from_row(standing), known


async def organization_standing(
    session: AsyncSession, organization_id: uuid.UUID
) -> OrganizationStanding | None:
    """None when there is no such organization."""
    query = standing_query().where(Organization.id == organization_id)
    row = (await session.execute(query)).one_or_none()
    return None if row is None else standing_from_row(row)


async def organization_standings(
    session: AsyncSession, organization_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, OrganizationStanding]:
    """The standing of each organization of a page (those that exist), in one statement."""
    if not organization_ids:
        return {}
    query = standing_query().where(Organization.id.in_(organization_ids))
    standings = [standing_from_row(row) for row in await session.execute(query)]
    return {standing.organization_id: standing for standing in standings}


def standing_from_row(row: Row[Any] | Sequence[Any]) -> OrganizationStanding:
    (org_id, name, customer, deleted, sub_id, status, start, end, cancel, prices, since) = tuple(
        row
    )
    return OrganizationStanding(
        organization_id=org_id,
        name=name,
        stripe_customer_id=customer,
        customer_deleted=bool(deleted),
        subscription_id=sub_id,
        status=status,
        current_period_start=start,
        current_period_end=end,
        cancel_at_period_end=bool(cancel),
        metered_price_ids=tuple(prices or ()),
        past_due_since=since,
    )
