"""Two live subscriptions with metered prices for one customer: the same usage billed twice.

Meter events name only the customer (`payload[stripe_customer_id]`, STRIPE.md), never a
subscription, so every live subscription of the customer with a price on a meter bills that
meter's usage (docs/api.md, "Stripe facts relied on here"). Checkout makes one session payable
at a time (billing/open_sessions.py), but a session paid in the instant before a newer checkout
expired it, or a subscription made in Stripe's Dashboard, still makes a second one.

Nothing here changes or cancels anything: which subscription goes, and whether to refund, is a
person's decision (docs/operations.md, "Two subscriptions for one organization"). The webhook
for `customer.subscription.created` logs a warning and counts it; /ops and `sensor-billing orgs
show` name every such subscription while it is live.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.billing.duplicates_repository import (
    MeteredSubscription,
    live_metered_subscriptions,
    live_metered_subscriptions_on,
)
from sensor_billing.billing.repository import customer_holder
from sensor_billing.db.driver import Driver
from sensor_billing.observability.metrics import record_duplicate_subscription

logger = logging.getLogger("sensor_billing.billing")


async def duplicate_subscriptions(
    session: AsyncSession, customer_id: str | None
) -> list[MeteredSubscription]:
    """The customer's live subscriptions with metered prices when there are two or more (all
    of them, by the start of their current period); otherwise none."""
    if customer_id is None:
        return []
    return _when_several(await live_metered_subscriptions(session, customer_id))


def _when_several(live: list[MeteredSubscription]) -> list[MeteredSubscription]:
    return live if len(live) > 1 else []


def besides(live: list[MeteredSubscription], shown_id: str | None) -> list[MeteredSubscription]:
    """The subscriptions of `live` other than `shown_id` (the one that decides the entitlement,
    which a page already shows). Which of them is "the duplicate" is not told: the mirror does
    not keep when each was made, and a person decides which one goes."""
    return [subscription for subscription in live if subscription.id != shown_id]


async def notice_duplicate_subscriptions(
    connection: Driver, created: Sequence[tuple[str, str, str]]
) -> None:
    """After `customer.subscription.created` events were applied, in their transaction: warn
    for each new subscription that, as now stored, is live with metered prices while its
    customer has another such one. (customer, subscription, event id) triples of distinct
    customers; one statement."""
    live_of = await live_metered_subscriptions_on(
        connection, [customer for customer, _, _ in created]
    )
    for customer_id, subscription_id, event_id in created:
        live = _when_several(live_of.get(customer_id, []))
        if subscription_id in {subscription.id for subscription in live}:
            await _warn(connection, customer_id, subscription_id, event_id, live)


async def _warn(
    connection: Driver,
    customer_id: str,
    subscription_id: str,
    event_id: str,
    live: list[MeteredSubscription],
) -> None:
    others = [s.id for s in live if s.id != subscription_id]
    organization_id = await customer_holder(connection, customer_id)
    logger.warning(
        "duplicate subscription %s: customer %s (organization %s) already has live "
        "subscription %s with metered prices, so the same usage is billed %d times; nothing "
        "was canceled (docs/operations.md, 'Two subscriptions for one organization')",
        subscription_id,
        customer_id,
        organization_id or "none yet",
        ", ".join(others),
        len(live),
        extra={
            "event_id": event_id,
            "subscription_id": subscription_id,
            "customer_id": customer_id,
            "organization_id": str(organization_id) if organization_id else None,
            "other_subscription_ids": others,
        },
    )
    record_duplicate_subscription()
