"""An organization's billing standing and the entitlement it gives (the policy:
`billing/entitlement.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.billing.entitlement import Entitlement, SubscriptionStanding, entitlement
from sensor_billing.billing.standing_repository import (
    OrganizationStanding,
    organization_standing,
    organization_standings,
)


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
