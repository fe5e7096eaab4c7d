"""Realistic Stripe events for `sensor-billing stripe trigger`, signed like Stripe signs them.

Bodies follow the documented shapes of API version 2025-03-31 ("basil", docs: changelog/basil):
a subscription's current period sits on each item, an invoice names its subscription under
`parent.subscription_details`. Every call makes fresh ids and `created` = now, so each event is
new to the webhook store. Only the fields a Stripe event of that type always carries and the
ones this service reads are filled in; the rest of Stripe's object is left out.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from sensor_billing.errors import (
    ApiUnreachableError,
    ConfigurationError,
    InvalidInputError,
    UnknownEventTypeError,
)
from sensor_billing.webhooks.signature import sign

API_VERSION = "2025-03-31.basil"
DAY_SECONDS = 86_400
# Seconds to wait for the API; a webhook answer should come back quickly (docs: webhooks).
REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class TriggerContext:
    """Ids shared by the objects of one event. Unset ones are made fresh."""

    now: int
    organization_id: str
    customer_id: str
    subscription_id: str


def new_context(
    *, organization_id: str | None = None, customer_id: str | None = None, now: int | None = None
) -> TriggerContext:
    return TriggerContext(
        now=int(time.time()) if now is None else now,
        organization_id=organization_id or str(uuid.uuid4()),
        customer_id=customer_id or _id("cus_", 14),
        subscription_id=_id("sub_"),
    )


def _id(prefix: str, length: int = 24) -> str:
    return prefix + secrets.token_hex(length)[:length]


def _envelope(event_type: str, obj: dict[str, Any], now: int) -> dict[str, Any]:
    return {
        "id": _id("evt_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": now,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": _id("req_", 14), "idempotency_key": str(uuid.uuid4())},
        "type": event_type,
    }


def checkout_session(ctx: TriggerContext) -> dict[str, Any]:
    return {
        "id": _id("cs_test_", 58),
        "object": "checkout.session",
        "client_reference_id": ctx.organization_id,
        "created": ctx.now - 60,
        "currency": "eur",
        "customer": ctx.customer_id,
        "expires_at": ctx.now + DAY_SECONDS,
        "livemode": False,
        "metadata": {"organization_id": ctx.organization_id},
        "mode": "subscription",
        "payment_status": "paid",
        "status": "complete",
        "subscription": ctx.subscription_id,
        "url": None,
    }


def _price(meter: str, unit_amount_decimal: str) -> dict[str, Any]:
    return {
        "id": _id("price_"),
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "currency": "eur",
        "livemode": False,
        "lookup_key": f"sensor_billing_{meter}_monthly_eur",
        "product": _id("prod_", 14),
        "recurring": {
            "interval": "month",
            "interval_count": 1,
            "meter": _id("mtr_test_"),
            "trial_period_days": None,
            "usage_type": "metered",
        },
        "type": "recurring",
        "unit_amount": None if "." in unit_amount_decimal else int(unit_amount_decimal),
        "unit_amount_decimal": unit_amount_decimal,
    }


def subscription(ctx: TriggerContext, status: str) -> dict[str, Any]:
    start = ctx.now - 3600
    end = start + 30 * DAY_SECONDS
    items = [
        {
            "id": _id("si_", 14),
            "object": "subscription_item",
            "created": start,
            "current_period_end": end,
            "current_period_start": start,
            "price": _price(meter, amount),
            "subscription": ctx.subscription_id,
        }
        for meter, amount in (("active_sensors", "500"), ("temperature_readings", "0.01"))
    ]
    ended = status == "canceled"
    return {
        "id": ctx.subscription_id,
        "object": "subscription",
        "billing_cycle_anchor": start,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": ctx.now if ended else None,
        "collection_method": "charge_automatically",
        "created": start,
        "currency": "eur",
        "customer": ctx.customer_id,
        "ended_at": ctx.now if ended else None,
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={ctx.subscription_id}",
        },
        "livemode": False,
        "metadata": {"organization_id": ctx.organization_id},
        "start_date": start,
        "status": status,
    }


def invoice(ctx: TriggerContext, paid: bool) -> dict[str, Any]:
    amount = 4250
    return {
        "id": _id("in_"),
        "object": "invoice",
        "amount_due": amount,
        "amount_paid": amount if paid else 0,
        "amount_remaining": 0 if paid else amount,
        "attempt_count": 1,
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "created": ctx.now - 3600,
        "currency": "eur",
        "customer": ctx.customer_id,
        "livemode": False,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": ctx.subscription_id},
            "type": "subscription_details",
        },
        "period_end": ctx.now - 3600,
        "period_start": ctx.now - 3600 - 30 * DAY_SECONDS,
        "status": "paid" if paid else "open",
        "total": amount,
    }


def deleted_customer(ctx: TriggerContext) -> dict[str, Any]:
    return {
        "id": ctx.customer_id,
        "object": "customer",
        "created": ctx.now - 30 * DAY_SECONDS,
        "currency": "eur",
        "delinquent": False,
        "email": None,
        "livemode": False,
        "metadata": {"organization_id": ctx.organization_id},
        "name": None,
    }


ObjectBuilder = Callable[[TriggerContext], dict[str, Any]]

BUILDERS: dict[str, ObjectBuilder] = {
    "checkout.session.completed": checkout_session,
    "customer.subscription.created": lambda ctx: subscription(ctx, "active"),
    "customer.subscription.updated": lambda ctx: subscription(ctx, "active"),
    "customer.subscription.deleted": lambda ctx: subscription(ctx, "canceled"),
    "invoice.paid": lambda ctx: invoice(ctx, paid=True),
    "invoice.payment_failed": lambda ctx: invoice(ctx, paid=False),
    "customer.deleted": deleted_customer,
}
SUPPORTED_TYPES = tuple(BUILDERS)


def build_event(event_type: str, ctx: TriggerContext) -> dict[str, Any]:
    builder = BUILDERS.get(event_type)
    if builder is None:
        raise UnknownEventTypeError(
            f"unknown event type {event_type!r}; supported: {', '.join(SUPPORTED_TYPES)}"
        )
    return _envelope(event_type, builder(ctx), ctx.now)


def encode(event: dict[str, Any]) -> bytes:
    # Stripe sends pretty-printed JSON; the signature covers these exact bytes.
    return json.dumps(event, indent=2).encode()


@dataclass(frozen=True, slots=True)
class Delivery:
    event: dict[str, Any]
    status: int
    answer: str


def check_api_url(api_url: str) -> None:
    """Refuse what is not an http(s) address before trying it: httpx would raise on a bad
    port or bracket, or report an unknown scheme as an API that does not answer."""
    try:
        parts = urlsplit(api_url)
        port = parts.port  # raises ValueError outside 0-65535 or for a malformed host
    except ValueError:
        port, parts = None, urlsplit("")
    if parts.scheme not in {"http", "https"} or not parts.hostname or port == 0:
        raise InvalidInputError(
            f"--url {api_url!r} is not the API's address, like http://127.0.0.1:8000"
        )


async def deliver_event(
    event: dict[str, Any],
    *,
    api_url: str,
    secrets_: list[str],
    http: httpx.AsyncClient | None = None,
) -> Delivery:
    """POST the event to `<api_url>/webhooks/stripe`, signed with the first secret."""
    if not secrets_:
        raise ConfigurationError("STRIPE_WEBHOOK_SECRET is not set: the event cannot be signed")
    check_api_url(api_url)
    body = encode(event)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": sign(secrets_[0], int(time.time()), body),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
    url = api_url.rstrip("/") + "/webhooks/stripe"
    try:
        if http is None:
            async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS) as own:
                response = await own.post(url, content=body, headers=headers)
        else:
            response = await http.post(url, content=body, headers=headers)
    except httpx.TransportError as error:
        raise ApiUnreachableError(
            f"the API at {api_url} did not answer ({type(error).__name__}); is it running?"
        ) from None
    return Delivery(event=event, status=response.status_code, answer=response.text)
