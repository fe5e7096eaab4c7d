"""One payable Checkout Session per organization, and none once it has a live subscription.

A Checkout Session stays open for 24 hours (docs: api/checkout/sessions/object, `expires_at`),
and paying two open sessions makes two subscriptions whose metered prices bill the same meter
usage twice (meter events name the customer, not a subscription: STRIPE.md). So a checkout,
holding the organization's checkout lock (customers_repository.lock_organization_checkouts):
1. asks Stripe for the customer's subscriptions (`GET /v1/subscriptions?customer=...`, which
   leaves out canceled ones: docs: api/subscriptions/list), since a session paid moments ago
   is known to Stripe before its webhook reaches us;
2. lists the customer's open sessions (`GET /v1/checkout/sessions?customer=...&status=open`:
   docs: api/checkout/sessions/list) and expires the ones this service made for the
   organization (`POST /v1/checkout/sessions/{id}/expire`: "A Checkout Session can be expired
   when it is in one of these statuses: open. After it expires, a customer can't complete a
   Checkout Session"; docs: api/checkout/sessions/expire), before it makes its own.

A retry of a request (same Idempotency-Key) must get back the session its first run made
(Stripe answers the create's idempotency key with it), so that session is not expired: each
session carries the Stripe idempotency key of the create that made it in its metadata
(`checkout_request`), and a request's own sessions are those under its key. When Stripe's
replay is a session that is no longer open (another checkout expired it meanwhile, or its
24 hours ran out), a key derived from it makes the next one (`replacement_key`).

Expiring a session that is no longer open is refused ("Only Checkout Sessions with a status in
["open"] can be expired", docs/stripe-standin.md); the session is read again: paid (`complete`)
means the customer subscribed in the instant between the list and the expire.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from typing import Final

import stripe

from sensor_billing.billing.service import TERMINAL_SUBSCRIPTION_STATUSES
from sensor_billing.stripe_api.meter_events import map_stripe_error

logger = logging.getLogger("sensor_billing.billing")

# Session metadata: the Stripe idempotency key of the create that made the session.
REQUEST_METADATA_KEY: Final = "checkout_request"
# Stripe's largest page (docs: api/pagination, `limit` 1 to 100); an organization has one or
# two open sessions, so one page is nearly always all of them.
PAGE_SIZE: Final = 100


@dataclass(frozen=True, slots=True)
class LiveSubscription:
    id: str
    status: str


async def live_subscription(
    client: stripe.StripeClient, customer_id: str
) -> LiveSubscription | None:
    """A subscription of the customer that has not ended, as Stripe knows it now."""
    try:
        listed = await client.v1.subscriptions.list_async(
            {"customer": customer_id, "limit": PAGE_SIZE}
        )
        async for subscription in listed.auto_paging_iter():
            if subscription.status not in TERMINAL_SUBSCRIPTION_STATUSES:
                return LiveSubscription(subscription.id, subscription.status)
    except stripe.StripeError as error:
        raise map_stripe_error(error) from error
    return None


def _metadata(session: stripe.checkout.Session) -> dict[str, object]:
    return session.metadata.to_dict() if session.metadata is not None else {}


def _is_own(session: stripe.checkout.Session, own_key: str | None) -> bool:
    made_under = _metadata(session).get(REQUEST_METADATA_KEY)
    return (
        own_key is not None
        and isinstance(made_under, str)
        and (made_under == own_key or made_under.startswith(f"{own_key}.after-"))
    )


def _made_for(session: stripe.checkout.Session, organization_id: uuid.UUID) -> bool:
    # Sessions of the customer that this service did not make for the organization (another
    # integration's) are not its to expire.
    made_for = _metadata(session).get("organization_id")
    return session.mode == "subscription" and made_for == str(organization_id)


async def expire_open_sessions(
    client: stripe.StripeClient,
    organization_id: uuid.UUID,
    customer_id: str,
    *,
    own_key: str | None,
) -> str | None:
    """Expire the organization's open sessions but the request's own. Answers the subscription
    (or session) of a session that was paid meanwhile, after expiring the own ones too: the
    organization is subscribed now, and no session of it may stay payable."""
    try:
        listed = await client.v1.checkout.sessions.list_async(
            {"customer": customer_id, "status": "open", "limit": PAGE_SIZE}
        )
        found = [s async for s in listed.auto_paging_iter() if _made_for(s, organization_id)]
        own = [s.id for s in found if _is_own(s, own_key)]
        paid = None
        for session_id in (s.id for s in found if s.id not in own):
            paid = await expire_session(client, session_id, organization_id) or paid
        if paid is not None:
            for session_id in own:
                await expire_session(client, session_id, organization_id)
    except stripe.StripeError as error:
        raise map_stripe_error(error) from error
    return paid


async def expire_session(
    client: stripe.StripeClient, session_id: str, organization_id: uuid.UUID
) -> str | None:
    """Expire an open session of the organization. Answers the subscription a session paid
    meanwhile made (its id, or the session's), None when it expired: now, or by itself before.
    Raises `stripe.StripeError` as the SDK does."""
    try:
        await client.v1.checkout.sessions.expire_async(session_id)
    except stripe.InvalidRequestError:
        current = await client.v1.checkout.sessions.retrieve_async(session_id)
        if current.status == "open":
            raise
        if current.status == "complete":
            return str(current.subscription or current.id)
        return None  # it expired by itself meanwhile
    logger.info(
        "checkout session %s of organization %s expired: a newer checkout replaces it",
        session_id,
        organization_id,
    )
    return None


def replacement_key(key: str, replayed_session_id: str) -> str:
    """The create key for the session that replaces one Stripe replayed no longer open; the
    same on every retry, so a retry gets the replacement back. Stays short (keys are at most
    255 characters) however many times it is derived."""
    digest = hashlib.sha256(replayed_session_id.encode()).hexdigest()[:12]
    return f"{key}.after-{digest}"
