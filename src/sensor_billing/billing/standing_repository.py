"""SQL for an organization's billing standing: its customer, the subscription that decides its
entitlement, and when its past-due grace period started. One statement: the product asks this on
every page it gates. Nothing here commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.billing.entitlement import STATUS_RANK, UNKNOWN_STATUS_RANK
from sensor_billing.db.schema import Organization, StripeInvoice, StripeSubscription


@dataclass(frozen=True, slots=True)
class OrganizationStanding:
    organization_id: uuid.UUID
    stripe_customer_id: str | None
    customer_deleted: bool
    subscription_id: str | None
    status: str | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    metered_price_ids: tuple[str, ...]
    past_due_since: datetime | None


def _standing_query(organization_id: uuid.UUID) -> Select[Any]:
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
    return (
        select(
            Organization.id,
            Organization.stripe_customer_id,
            Organization.stripe_customer_deleted_at.is_not(None),
            subscription.c.id,
            subscription.c.status,
            subscription.c.current_period_start,
            subscription.c.current_period_end,
            subscription.c.cancel_at_period_end,
            subscription.c.metered_price_ids,
            past_due_since,
        )
        .select_from(Organization)
        .outerjoin(subscription, and_(true()))
        .where(Organization.id == organization_id)
    )


async def organization_standing(
    session: AsyncSession, organization_id: uuid.UUID
) -> OrganizationStanding | None:
    """None when there is no such organization."""
    row = (await session.execute(_standing_query(organization_id))).one_or_none()
    if row is None:
        return None
    (org_id, customer_id, deleted, sub_id, status, start, end, cancel, prices, since) = row
    return OrganizationStanding(
        organization_id=org_id,
        stripe_customer_id=customer_id,
        customer_deleted=bool(deleted),
        subscription_id=sub_id,
        status=status,
        current_period_start=start,
        current_period_end=end,
        cancel_at_period_end=bool(cancel),
        metered_price_ids=tuple(prices or ()),
        past_due_since=since,
    )
