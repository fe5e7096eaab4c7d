"""Creating a Stripe customer for every organization that has none.

Each organization is its own transaction: the customer is created while the organization row
is locked, and its id is committed before the next one starts, so a crash half-way keeps
everything stored so far. The idempotency key `customer-for-org-<uuid>` makes a rerun after a
crash between Stripe's answer and the commit get the same customer back instead of a second one
(Stripe keeps keys at least 24 h: docs: api/idempotent_requests). The create carries only the
organization id; the name is set by an update after it, so a rename in between does not change
the create's parameters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import stripe

from sensor_billing.billing import customers_repository as repository
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.errors import NoSuchOrganizationError
from sensor_billing.stripe_api.meter_events import map_stripe_error


@dataclass(frozen=True, slots=True)
class CreatedCustomer:
    organization_id: uuid.UUID
    name: str
    customer_id: str


@dataclass(slots=True)
class CustomerSyncSummary:
    created: list[CreatedCustomer] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "created": [
                {
                    "organization_id": str(c.organization_id),
                    "name": c.name,
                    "stripe_customer_id": c.customer_id,
                }
                for c in self.created
            ]
        }


def customer_idempotency_key(organization_id: uuid.UUID) -> str:
    return f"customer-for-org-{organization_id}"


async def sync_customers(
    sessions: SessionFactory, client: stripe.StripeClient
) -> CustomerSyncSummary:
    """Create and store a Stripe customer for each organization without one.

    Raises `StripeUnavailableError` / `StripeRefusedError` on the first Stripe failure; the
    customers stored before it stay stored."""
    async with sessions() as session:
        pending = await repository.organizations_without_customer(session)
    summary = CustomerSyncSummary()
    for candidate in pending:
        async with unit_of_work(sessions) as session:
            organization = await repository.lock_organization_without_customer(
                session, candidate.id
            )
            if organization is None:
                continue  # linked meanwhile (a checkout webhook or another sync)
            customer_id = await create_customer(client, organization.id, organization.name)
            await repository.store_customer_id(session, organization.id, customer_id)
        summary.created.append(CreatedCustomer(organization.id, organization.name, customer_id))
    return summary


async def ensure_customer(
    sessions: SessionFactory, client: stripe.StripeClient, organization_id: uuid.UUID
) -> str:
    """The organization's Stripe customer id, created and stored first when it has none, in
    a transaction of its own (committed even if what the caller does next fails: a customer
    made in Stripe but not stored would be made again once Stripe forgets the key).

    Two callers at once make one customer: the organization's row lock makes the second wait
    and then find the first one's customer; the idempotency key would give it back too.
    Raises `NoSuchOrganizationError`, `StripeUnavailableError`, `StripeRefusedError`."""
    async with unit_of_work(sessions) as session:
        organization = await repository.lock_organization_customer(session, organization_id)
        if organization is None:
            raise NoSuchOrganizationError(f"no organization {organization_id}")
        if organization.customer_id is not None:
            return organization.customer_id
        customer_id = await create_customer(client, organization.id, organization.name)
        await repository.store_customer_id(session, organization.id, customer_id)
    return customer_id


async def create_customer(
    client: stripe.StripeClient, organization_id: uuid.UUID, name: str
) -> str:
    """Create (or, under the organization's idempotency key, get back) its Stripe customer."""
    try:
        # Only what never changes goes under the key: Stripe refuses the same key with
        # other parameters (400 idempotency_error), so a name sent with it would turn a
        # rerun after a rename into an error for 24 h and a second customer after.
        customer = await client.v1.customers.create_async(
            {"metadata": {"organization_id": str(organization_id)}},
            {"idempotency_key": customer_idempotency_key(organization_id)},
        )
        # The current name, also on a customer the key gave back from an earlier run.
        await client.v1.customers.update_async(customer.id, {"name": name})
    except stripe.StripeError as error:
        raise map_stripe_error(error) from error
    return customer.id
