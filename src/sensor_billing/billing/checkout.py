"""Starting a subscription (a Stripe Checkout Session) and managing one (a Billing Portal
session) for an organization, as the SaaS backend asks through /v1.

The Checkout Session is in `subscription` mode with the two metered prices `stripe setup`
made, for the organization's customer (created first, idempotently, when it has none), and
names the organization in `client_reference_id` and in the metadata of the session and of the
subscription it makes: the `checkout.session.completed` webhook links them by either. Metered
prices take no quantity (docs: api/checkout/sessions/create, `line_items.quantity`: "should
not be defined when `recurring.usage_type=metered`").

An organization has at most one session a customer can pay: before a checkout makes its
session it expires the organization's other open ones, holding the organization's checkout
lock so that two checkouts at once cannot each miss the other's (billing/open_sessions.py).

Nothing here writes billing state: the webhooks do, once Stripe says what happened.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.api import StripeKeys
from sensor_billing.billing import open_sessions
from sensor_billing.billing.customers import ensure_customer
from sensor_billing.billing.customers_repository import lock_organization_checkouts
from sensor_billing.billing.service import TERMINAL_SUBSCRIPTION_STATUSES
from sensor_billing.billing.standing_repository import OrganizationStanding, organization_standing
from sensor_billing.db import SessionFactory
from sensor_billing.errors import (
    CheckoutNotConfiguredError,
    CustomerDeletedError,
    CustomerMissingError,
    NoSuchOrganizationError,
    StripeUnavailableError,
    SubscriptionExistsError,
)
from sensor_billing.stripe_api.meter_events import map_stripe_error
from sensor_billing.stripe_api.setup import find_subscription_prices

logger = logging.getLogger("sensor_billing.billing")


def portal_sessions_path(organization_id: uuid.UUID) -> str:
    return f"/v1/organizations/{organization_id}/portal-sessions"


def checkout_sessions_path(organization_id: uuid.UUID) -> str:
    return f"/v1/organizations/{organization_id}/checkout-sessions"


@dataclass(frozen=True, slots=True)
class StartedSession:
    id: str
    url: str
    customer_id: str


def _configured(client: stripe.StripeClient | None) -> stripe.StripeClient:
    if client is None:
        raise CheckoutNotConfiguredError("STRIPE_API_KEY is not set: Stripe cannot be called")
    return client


async def _standing(session: AsyncSession, organization_id: uuid.UUID) -> OrganizationStanding:
    standing = await organization_standing(session, organization_id)
    if standing is None:
        raise NoSuchOrganizationError(f"no organization {organization_id}")
    if standing.stripe_customer_id is not None and standing.customer_deleted:
        raise CustomerDeletedError(
            f"the organization's Stripe customer {standing.stripe_customer_id} was deleted; an "
            "operator clears organizations.stripe_customer_id to give it a new one "
            "(README: customers sync)"
        )
    return standing


def _options(idempotency_key: str | None) -> stripe.RequestOptions:
    return {"idempotency_key": idempotency_key} if idempotency_key else {}


def _subscription_exists(
    organization_id: uuid.UUID, subscription: str, status: str
) -> SubscriptionExistsError:
    portal = portal_sessions_path(organization_id)
    return SubscriptionExistsError(
        f"the organization already has subscription {subscription} ({status}): open the "
        f"Billing Portal (POST {portal}) to change or cancel it",
        portal_sessions=portal,
    )


# Replacements of a replayed session that is no longer open, per request: each one needs
# another checkout to have expired the one before it between two retries of this request.
MAX_REPLACEMENTS = 3


async def start_checkout(
    session: AsyncSession,
    sessions: SessionFactory,
    client: stripe.StripeClient | None,
    organization_id: uuid.UUID,
    *,
    success_url: str,
    cancel_url: str,
    keys: StripeKeys,
) -> StartedSession:
    """Raises `NoSuchOrganizationError`, `CustomerDeletedError`, `SubscriptionExistsError`,
    `CheckoutNotConfiguredError`, `StripeRefusedError`, `StripeUnavailableError`."""
    stripe_client = _configured(client)
    standing = await _standing(session, organization_id)
    # The subscription that decides entitlement ranks ended ones last: if it has ended, all have.
    if standing.subscription_id is not None and (
        standing.status not in TERMINAL_SUBSCRIPTION_STATUSES
    ):
        raise _subscription_exists(organization_id, standing.subscription_id, str(standing.status))
    # Before any customer is made: an account without the set-up gets none.
    prices = await find_subscription_prices(stripe_client)
    customer_id = standing.stripe_customer_id or await ensure_customer(
        sessions, stripe_client, organization_id
    )
    # Held to the end of the request's transaction, across the Stripe calls below (as the
    # Idempotency-Key's row lock already is): a second checkout waits, then finds this one's
    # session open and expires it.
    await lock_organization_checkouts(session, organization_id)
    live = await open_sessions.live_subscription(stripe_client, customer_id)
    if live is not None:
        raise _subscription_exists(organization_id, live.id, live.status)
    create_key = keys.for_call("checkout-session")
    paid = await open_sessions.expire_open_sessions(
        stripe_client, organization_id, customer_id, own_key=create_key
    )
    if paid is not None:
        raise _subscription_exists(organization_id, paid, "paid moments ago")
    created = await _create_session(
        stripe_client,
        organization_id,
        customer_id,
        prices,
        success_url=success_url,
        cancel_url=cancel_url,
        key=create_key,
    )
    logger.info(
        "checkout session %s for organization %s (customer %s)",
        created.id,
        organization_id,
        customer_id,
    )
    return StartedSession(created.id, str(created.url), customer_id)


async def _create_session(
    client: stripe.StripeClient,
    organization_id: uuid.UUID,
    customer_id: str,
    prices: list[str],
    *,
    success_url: str,
    cancel_url: str,
    key: str | None,
) -> stripe.checkout.Session:
    """A new open session, or the one Stripe made under `key` before if it is still open."""
    reference = {"organization_id": str(organization_id)}
    for _ in range(MAX_REPLACEMENTS + 1):
        metadata = (
            reference if key is None else {**reference, open_sessions.REQUEST_METADATA_KEY: key}
        )
        try:
            created = await client.v1.checkout.sessions.create_async(
                {
                    "mode": "subscription",
                    "customer": customer_id,
                    "line_items": [{"price": price} for price in prices],
                    "client_reference_id": str(organization_id),
                    "metadata": metadata,
                    "subscription_data": {"metadata": reference},
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                },
                _options(key),
            )
            if key is not None:
                # Under a key Stripe may answer a session it made before, as it was then
                # ("saves the status code and body of the first request": api/
                # idempotent_requests): only a read says whether it is still open.
                created = await client.v1.checkout.sessions.retrieve_async(created.id)
        except stripe.StripeError as error:
            raise map_stripe_error(error) from error
        if created.status == "complete":  # this request's session, paid
            raise _subscription_exists(
                organization_id, str(created.subscription or created.id), "paid"
            )
        if created.status == "open":
            # A hosted session has a url while it is open (docs: api/checkout/sessions/object).
            if not created.url:
                raise StripeUnavailableError(
                    f"Checkout Session {created.id} came back without a url"
                )
            return created
        if key is None:
            raise StripeUnavailableError(
                f"Checkout Session {created.id} came back {created.status}"
            )
        key = open_sessions.replacement_key(key, created.id)
    raise StripeUnavailableError(
        f"Stripe kept answering sessions that are no longer open ({created.id}); retry later"
    )


async def open_portal(
    session: AsyncSession,
    client: stripe.StripeClient | None,
    organization_id: uuid.UUID,
    *,
    return_url: str,
    keys: StripeKeys,
) -> StartedSession:
    """Raises `NoSuchOrganizationError`, `CustomerMissingError`, `CustomerDeletedError`,
    `CheckoutNotConfiguredError`, `StripeRefusedError`, `StripeUnavailableError`."""
    stripe_client = _configured(client)
    customer_id = (await _standing(session, organization_id)).stripe_customer_id
    if customer_id is None:
        raise CustomerMissingError(
            "the organization has no Stripe customer yet: start a subscription first "
            f"(POST {checkout_sessions_path(organization_id)})"
        )
    try:
        created = await stripe_client.v1.billing_portal.sessions.create_async(
            {"customer": customer_id, "return_url": return_url},
            _options(keys.for_call("portal-session")),
        )
    except stripe.StripeError as error:
        raise map_stripe_error(error) from error
    logger.info(
        "billing portal session %s for organization %s (customer %s)",
        created.id,
        organization_id,
        customer_id,
    )
    return StartedSession(created.id, created.url, customer_id)
