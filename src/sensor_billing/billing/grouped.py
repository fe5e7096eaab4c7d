"""Applying events to billing state, a group at a time: each step one statement for the group.

Handled webhooks that arrive together in one API process are applied in one transaction
(`webhooks.groups`); an event applied alone is a group of one (`webhooks.handlers`). The rules
are the per-event ones (`service.decide_*`); only the reads and writes are set-based: the
objects locked in id order in one statement, read in one, written in one round trip. The
events of a group touch distinct objects, customers and organizations
(`webhooks.handlers.group_keys`), so no decision depends on another's write; where the state
read says two of them meet after all (an organization that holds the customer another event
links, say), `GroupConflict` rolls the group back and its events are applied one at a time.
Nothing here commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sensor_billing.billing import repository
from sensor_billing.billing.service import (
    EventContext,
    GroupConflict,
    Result,
    carry_out_all,
    carry_out_customers,
    decide_deletion,
    decide_invoice_payment,
    decide_link,
    decide_subscription,
)
from sensor_billing.billing.stripe_objects import InvoiceSnapshot, SubscriptionSnapshot
from sensor_billing.db.driver import Driver


def customers_of(items: Sequence[tuple[EventContext, SubscriptionSnapshot]]) -> list[str]:
    return [snapshot.customer_id for _, snapshot in items]


def _distinct(ids: Sequence[str | uuid.UUID], what: str) -> None:
    if len(set(ids)) != len(ids):
        raise GroupConflict(f"two events of the group name one {what}")


async def apply_subscriptions(
    connection: Driver, items: Sequence[tuple[EventContext, SubscriptionSnapshot]]
) -> list[Result]:
    """What subscription events say, for events of distinct subscriptions. Any event's copy
    of a price is right (prices never change), stale or not."""
    ids = [snapshot.id for _, snapshot in items]
    _distinct(ids, "subscription")
    prices = {price.id: price for _, snapshot in items for price in snapshot.metered_prices}
    await repository.record_prices(connection, list(prices.values()))
    await repository.lock_stripe_objects(connection, [*customers_of(items), *ids])
    rows = await repository.subscriptions_by_id(connection, ids)
    decisions = [decide_subscription(rows.get(s.id), event, s) for event, s in items]
    return await carry_out_all(connection, decisions)


async def apply_invoice_payments(
    connection: Driver, items: Sequence[tuple[EventContext, InvoiceSnapshot, str]]
) -> list[Result]:
    """What invoice payment events say, for events of distinct invoices."""
    ids = [snapshot.id for _, snapshot, _ in items]
    _distinct(ids, "invoice")
    customers = [snapshot.customer_id for _, snapshot, _ in items]
    await repository.lock_stripe_objects(connection, [*customers, *ids])
    rows = await repository.invoices_by_id(connection, ids)
    decided = [
        decide_invoice_payment(rows.get(snapshot.id), event, snapshot, payment_status)
        for event, snapshot, payment_status in items
    ]
    moves = [
        (snapshot.id, decision.moved_first_failed_at[0])
        for (_, snapshot, _), decision in zip(items, decided, strict=True)
        if decision.moved_first_failed_at is not None
    ]
    await repository.set_first_failed_at(connection, moves)
    results = await carry_out_all(connection, [decision.decision for decision in decided])
    return [decision.marked(result) for decision, result in zip(decided, results, strict=True)]


async def link_customers(
    connection: Driver, items: Sequence[tuple[EventContext, uuid.UUID, str]]
) -> list[Result]:
    """Link the organization each Checkout Session named to the session's Stripe customer,
    for checkouts of distinct organizations and customers."""
    organization_ids = [organization_id for _, organization_id, _ in items]
    customer_ids = [customer_id for _, _, customer_id in items]
    _distinct(organization_ids, "organization")
    _distinct(customer_ids, "customer")
    await repository.lock_stripe_objects(connection, customer_ids)
    rows = await repository.organizations_for_update(connection, organization_ids, [])
    organizations = {row.id: row for row in rows}
    holders = await repository.customer_holders(connection, customer_ids)
    if any(holders.get(c, o) != o and holders[c] in organizations for _, o, c in items):
        # One event's organization holds another's customer: the decisions depend on the
        # order the events are applied in, which only one at a time settles.
        raise GroupConflict("an organization of the group holds another event's customer")
    deleted = await repository.customers_deleted_at(connection, customer_ids)
    decisions = [
        decide_link(
            event,
            organization_id,
            customer_id,
            organizations.get(organization_id),
            holders.get(customer_id),
            deleted.get(customer_id),
        )
        for event, organization_id, customer_id in items
    ]
    return await carry_out_customers(connection, decisions)


async def delete_customers(
    connection: Driver, items: Sequence[tuple[EventContext, str]]
) -> list[Result]:
    """Mark each organization's customer deleted (usage is no longer reported for it), for
    events of distinct customers."""
    customer_ids = [customer_id for _, customer_id in items]
    _distinct(customer_ids, "customer")
    await repository.lock_stripe_objects(connection, customer_ids)
    rows = await repository.organizations_for_update(connection, [], customer_ids)
    holding = {row.stripe_customer_id: row for row in rows}
    unheld = [customer_id for customer_id in customer_ids if customer_id not in holding]
    deleted = await repository.customers_deleted_at(connection, unheld) if unheld else {}
    decisions = [
        decide_deletion(event, customer_id, holding.get(customer_id), deleted.get(customer_id))
        for event, customer_id in items
    ]
    return await carry_out_customers(connection, decisions)
