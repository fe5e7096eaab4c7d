"""An organization's billing standing and the entitlement it gives (the policy:
`billing/entitlement.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.billing.entitlement import Entitlement, SubscriptionStanding, entitlement
from sensor_billing.billing.repository import KnownPrice, prices_by_id
from sensor_billing.billing.standing_repository import (
    OrganizationStanding,
    organization_standing,
    organization_standing_and_prices,
    organization_standings,
)
from sensor_billing.errors import NoSuchOrganizationError
from sensor_billing.stripe_api.setup import event_name_of_price


@dataclass(frozen=True, slots=True)
class OrganizationBilling:
    standing: OrganizationStanding
    entitlement: Entitlement


def entitlement_of(
    standing: OrganizationStanding, *, now: datetime, grace: timedelta
) -> Entitlement:
    subscription = (
        SubscriptionStanding(
            status=standing.status,
            current_period_end=standing.current_period_end,
            cancel_at_period_end=standing.cancel_at_period_end,
            past_due_since=standing.past_due_since,
        )
        if standing.status is not None
        else None
    )
    return entitlement(
        subscription, now=now, grace=grace, customer_deleted=standing.customer_deleted
    )


async def organization_billing(
    session: AsyncSession, organization_id: uuid.UUID, *, now: datetime, grace: timedelta
) -> OrganizationBilling | None:
    """The organization's standing and entitlement at `now`; None when it does not exist."""
    standing = await organization_standing(session, organization_id)
    if standing is None:
        return None
    return OrganizationBilling(standing, entitlement_of(standing, now=now, grace=grace))


async def organization_billings(
    session: AsyncSession,
    organization_ids: Sequence[uuid.UUID],
    *,
    now: datetime,
    grace: timedelta,
) -> dict[uuid.UUID, OrganizationBilling]:
    """Each organization's standing and entitlement at `now`, in one statement (a page of
    them); organizations that do not exist are left out."""
    standings = await organization_standings(session, organization_ids)
    return {
        org_id: OrganizationBilling(standing, entitlement_of(standing, now=now, grace=grace))
        for org_id, standing in standings.items()
    }


@dataclass(frozen=True, slots=True)
class PriceInfo:
    """A metered price of the subscription, as its events described it; only the id when no
    event carrying the full price has arrived yet (a subscription recorded before prices were
    kept: its next event fills them)."""

    id: str
    event_name: str | None = None
    meter_id: str | None = None
    currency: str | None = None
    unit_amount_decimal: Decimal | None = None


def price_infos(price_ids: Sequence[str], known: dict[str, KnownPrice]) -> list[PriceInfo]:
    """The subscription's prices in its order, each as complete as `stripe_prices` knows it."""
    prices = []
    for price_id in price_ids:
        row = known.get(price_id)
        if row is None:
            prices.append(PriceInfo(price_id))
            continue
        prices.append(
            PriceInfo(
                id=row.id,
                event_name=event_name_of_price(row.lookup_key, row.currency),
                meter_id=row.meter_id,
                currency=row.currency,
                unit_amount_decimal=row.unit_amount_decimal,
            )
        )
    return prices


async def metered_prices(session: AsyncSession, price_ids: Sequence[str]) -> list[PriceInfo]:
    return price_infos(price_ids, await prices_by_id(session, price_ids))


@dataclass(frozen=True, slots=True)
class BillingView:
    """What `GET /v1/organizations/{id}/billing` answers: standing, entitlement, prices."""

    billing: OrganizationBilling
    prices: list[PriceInfo]


async def billing_view(
    connection: Any, organization_id: uuid.UUID, *, now: datetime, grace: timedelta
) -> BillingView:
    """`connection`: an asyncpg connection (`db.driver_connection`). Raises
    `NoSuchOrganizationError`. One statement on PostgreSQL: no Stripe call, no write."""
    found = await organization_standing_and_prices(connection, organization_id)
    if found is None:
        raise NoSuchOrganizationError(f"no organization {organization_id}")
    standing, known = found
    billing = OrganizationBilling(standing, entitlement_of(standing, now=now, grace=grace))
    prices = price_infos(standing.metered_price_ids, {price.id: price for price in known})
    return BillingView(billing, prices)
