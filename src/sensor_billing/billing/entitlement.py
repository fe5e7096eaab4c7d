"""Whether an organization may use the product: the one place the policy lives.

- `active`, `trialing`: entitled; `until` the period's end when it is set to cancel then.
- `past_due`: entitled (`past_due_grace`) until the first failed payment + the grace period,
  then not (`past_due_grace_ended`).
- `unpaid`, `canceled`, `incomplete`, `incomplete_expired`, `paused`: not entitled, the
  status as the reason.
- no subscription (`no_subscription`), a deleted customer (`customer_deleted`): not entitled.

The same table is in docs/billing.md; keep the two together.
The grace period (`PAST_DUE_GRACE_DAYS`, 7 by default) counts from the earliest
`invoice.payment_failed` of the subscription's unpaid invoices; until that event arrives (Stripe
does not order events), from the event that made the subscription past_due. A status this table
does not name (one Stripe adds later) is not entitled, with the status as the reason, so a new
state never grants access by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

ENTITLED_STATUSES: Final = frozenset({"active", "trialing"})

# The order in which an organization's subscriptions are considered when it has several (a
# canceled one and its successor, say): the one that entitles it most decides.
STATUS_RANK: Final[dict[str, int]] = {
    "active": 0,
    "trialing": 1,
    "past_due": 2,
    "unpaid": 3,
    "incomplete": 4,
    "paused": 5,
    "incomplete_expired": 6,
    "canceled": 7,
}
UNKNOWN_STATUS_RANK: Final = 8


@dataclass(frozen=True, slots=True)
class Entitlement:
    entitled: bool
    reason: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionStanding:
    """What the policy needs to know of an organization's subscription."""

    status: str
    current_period_end: datetime | None
    cancel_at_period_end: bool
    # The first failed payment of the unpaid invoices (or, before their event arrived, when the
    # subscription became past_due); None unless the subscription is past_due.
    past_due_since: datetime | None = None


def entitlement(
    standing: SubscriptionStanding | None,
    *,
    now: datetime,
    grace: timedelta,
    customer_deleted: bool = False,
) -> Entitlement:
    if customer_deleted:
        return Entitlement(False, "customer_deleted")
    if standing is None:
        return Entitlement(False, "no_subscription")
    if standing.status in ENTITLED_STATUSES:
        until = standing.current_period_end if standing.cancel_at_period_end else None
        return Entitlement(True, standing.status, until)
    if standing.status == "past_due":
        if standing.past_due_since is None:
            return Entitlement(False, "past_due_grace_ended")
        grace_end = standing.past_due_since + grace
        if now < grace_end:
            return Entitlement(True, "past_due_grace", grace_end)
        return Entitlement(False, "past_due_grace_ended")
    return Entitlement(False, standing.status)
