"""SQL for creating Stripe customers for organizations and serialising their checkouts. Nothing
here commits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.db.schema import Organization


@dataclass(frozen=True, slots=True)
class OrganizationWithoutCustomer:
    id: uuid.UUID
    name: str


async def organizations_without_customer(
    session: AsyncSession,
) -> list[OrganizationWithoutCustomer]:
    rows = await session.execute(
        select(Organization.id, Organization.name)
        .where(Organization.stripe_customer_id.is_(None))
        .order_by(Organization.created_at, Organization.id)
    )
    return [OrganizationWithoutCustomer(id=row.id, name=row.name) for row in rows]


async def lock_organization_without_customer(
    session: AsyncSession, organization_id: uuid.UUID
) -> OrganizationWithoutCustomer | None:
    """The organization, locked until the transaction ends, if it still has no customer.

    The lock makes a second `customers sync` running at once wait, then see the stored id."""
    row = (
        await session.execute(
            select(Organization.id, Organization.name)
            .where(Organization.id == organization_id, Organization.stripe_customer_id.is_(None))
            .with_for_update()
        )
    ).one_or_none()
    return None if row is None else OrganizationWithoutCustomer(id=row.id, name=row.name)


@dataclass(frozen=True, slots=True)
class OrganizationCustomer:
    id: uuid.UUID
    name: str
    customer_id: str | None


async def lock_organization_customer(
    session: AsyncSession, organization_id: uuid.UUID
) -> OrganizationCustomer | None:
    """The organization, locked until the transaction ends, so that two requests that both
    find it without a customer create one between them: the second waits, then sees it."""
    row = (
        await session.execute(
            select(Organization.id, Organization.name, Organization.stripe_customer_id)
            .where(Organization.id == organization_id)
            .with_for_update()
        )
    ).one_or_none()
    return None if row is None else OrganizationCustomer(row.id, row.name, row.stripe_customer_id)


async def store_customer_id(
    session: AsyncSession, organization_id: uuid.UUID, customer_id: str
) -> None:
    # The deletion mark belongs to the customer being replaced (README: an organization whose
    # customer was deleted gets a new one once its id is cleared); kept, the organization would
    # stay unmetered with its new, live customer.
    await session.execute(
        update(Organization)
        .where(Organization.id == organization_id)
        .values(stripe_customer_id=customer_id, stripe_customer_deleted_at=None)
    )


async def lock_organization_checkouts(session: AsyncSession, organization_id: uuid.UUID) -> None:
    """Serialise the organization's checkouts until the transaction ends, so that two at once
    cannot each expire the other's session before it exists and leave both open.

    An advisory lock, not the organization's row: the checkout holds it across its Stripe
    calls, and a row lock would make the webhooks that lock the row (a completed checkout's
    link) and, as `FOR UPDATE`, every insert whose foreign key names the organization (the
    window close, for every organization at once) wait for Stripe."""
    await session.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"checkout:{organization_id}", 0)))
    )
