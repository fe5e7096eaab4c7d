"""SQL for billing state. Nothing here commits: the caller's unit of work does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.billing.stripe_objects import PriceSnapshot
from sensor_billing.db.schema import (
    BillingStateChange,
    Organization,
    StripeInvoice,
    StripePrice,
    StripeSubscription,
)


async def lock_stripe_object(session: AsyncSession, stripe_id: str) -> None:
    """Serialise writers of one Stripe object until the transaction ends.

    Two different events about one object (say two subscription updates) can arrive at the same
    moment; without this, both could read the same watermark and the older one could win.
    """
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(stripe_id, 0))))


async def get_subscription(session: AsyncSession, stripe_id: str) -> StripeSubscription | None:
    return await session.get(StripeSubscription, stripe_id, populate_existing=True)


async def get_invoice(session: AsyncSession, stripe_id: str) -> StripeInvoice | None:
    return await session.get(StripeInvoice, stripe_id, populate_existing=True)


async def organization_for_update(
    session: AsyncSession, organization_id: uuid.UUID
) -> Organization | None:
    return await session.scalar(
        select(Organization).where(Organization.id == organization_id).with_for_update()
    )


async def organization_by_customer_for_update(
    session: AsyncSession, customer_id: str
) -> Organization | None:
    return await session.scalar(
        select(Organization).where(Organization.stripe_customer_id == customer_id).with_for_update()
    )


async def organization_id_by_customer(session: AsyncSession, customer_id: str) -> uuid.UUID | None:
    return await session.scalar(
        select(Organization.id).where(Organization.stripe_customer_id == customer_id)
    )


async def customer_deleted_at(session: AsyncSession, customer_id: str) -> datetime | None:
    """When a `customer.deleted` event said Stripe deleted the customer, if one did."""
    deleted_at = await session.scalar(
        select(BillingStateChange.change["stripe_customer_deleted_at"]["to"].astext)
        .where(
            BillingStateChange.stripe_object_id == customer_id,
            BillingStateChange.event_type == "customer.deleted",
        )
        .order_by(BillingStateChange.id)
        .limit(1)
    )
    return datetime.fromisoformat(deleted_at) if deleted_at else None


async def record_prices(session: AsyncSession, prices: Sequence[PriceSnapshot]) -> None:
    """Keep prices not seen before; a known one is left as it is (Stripe never changes a
    price's amount, currency or meter)."""
    if not prices:
        return
    await session.execute(
        insert(StripePrice)
        .values(
            [
                {
                    "id": price.id,
                    "currency": price.currency,
                    "unit_amount_decimal": price.unit_amount_decimal,
                    "meter_id": price.meter_id,
                    "lookup_key": price.lookup_key,
                }
                for price in prices
            ]
        )
        .on_conflict_do_nothing(index_elements=[StripePrice.id])
    )


@dataclass(frozen=True, slots=True)
class KnownPrice:
    """A row of `stripe_prices`."""

    id: str
    currency: str
    unit_amount_decimal: Decimal | None
    meter_id: str | None
    lookup_key: str | None


async def prices_by_id(session: AsyncSession, price_ids: Sequence[str]) -> dict[str, KnownPrice]:
    if not price_ids:
        return {}
    rows = await session.scalars(select(StripePrice).where(StripePrice.id.in_(price_ids)))
    return {
        row.id: KnownPrice(
            row.id, row.currency, row.unit_amount_decimal, row.meter_id, row.lookup_key
        )
        for row in rows
    }


def add(session: AsyncSession, row: StripeSubscription | StripeInvoice) -> None:
    session.add(row)


async def record_change(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID | None,
    stripe_object_id: str,
    event_id: str,
    event_type: str,
    change: dict[str, Any],
    summary: str,
) -> None:
    session.add(
        BillingStateChange(
            organization_id=organization_id,
            stripe_object_id=stripe_object_id,
            event_id=event_id,
            event_type=event_type,
            change=change,
            summary=summary,
        )
    )
    await session.flush()
