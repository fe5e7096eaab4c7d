"""Starting a subscription (a Stripe Checkout Session) and managing one (a Billing Portal
session) for an organization, as the SaaS backend asks through /v1.

The Checkout Session is in `subscription` mode with the two metered prices `stripe setup`
made, for the organization's customer (created first, idempotently, when it has none), and
names the organization in `client_reference_id` and in the metadata of the session and of the
subscription it makes: the `checkout.session.completed` webhook links them by either. Metered
prices take no quantity (docs: api/checkout/sessions/create, `line_items.quantity`: "should
not be defined when `recurring.usage_type=metered`").

Nothing here writes billing state: the webhooks do, once Stripe says what happened.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.api import StripeKeys
from sensor_billing.billing.customers import ensure_customer
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
        portal = portal_sessions_path(organization_id)
        raise SubscriptionExistsError(
            f"the organization already has subscription {standing.subscription_id} "
            f"({standing.status}): open the Billing Portal (POST {portal}) to change or cancel it",
            portal_sessions=portal,
        )
    # Before any customer is made: an account without the set-up gets none.
    prices = await find_subscription_prices(stripe_client)
    customer_id = standing.stripe_customer_id or await ensure_customer(
        sessions, stripe_client, organization_id
    )
    reference = {"organization_id": str(organization_id)}
    try:
        created = await stripe_client.v1.checkout.sessions.create_async(
            {
                "mode": "subscription",
                "customer": customer_id,
                "line_items": [{"price": price} for price in prices],
                "client_reference_id": str(organization_id),
                "metadata": reference,
                "subscription_data": {"metadata": reference},
                "success_url": success_url,
                "cancel_url": cancel_url,
            },
            _options(keys.for_call("checkout-session")),
        )
    except stripe.StripeError as error:
        raise map_stripe_error(error) from error
    if not created.url:  # hosted sessions always have one (docs: api/checkout/sessions/object)
        raise StripeUnavailableError(f"Checkout Session {created.id} came back without a url")
    logger.info(
        "checkout session %s for organization %s (customer %s)",
        created.id,
        organization_id,
        customer_id,
    )
    return StartedSession(created.id, created.url, customer_id)


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
