"""Billing state built the way production builds it: organizations in PostgreSQL, and Stripe
subscription and invoice events (in the documented 2025-03-31 shape) delivered, signed, to the
app's webhook endpoint."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import Organization
from tests.support.stripe_events import deliver, make_event
from tests.webhooks.conftest import SECRET

T0 = 1_764_000_000  # 2025-11-24
GRACE = timedelta(days=7)
CUSTOMER = "cus_standing"


async def new_organization(
    sessions: SessionFactory, customer_id: str | None, name: str = "Polar Freight"
) -> uuid.UUID:
    async with unit_of_work(sessions) as session:
        organization = Organization(name=name, stripe_customer_id=customer_id)
        session.add(organization)
        await session.flush()
        return organization.id


def subscription(
    sub_id: str, status: str, *, start: int = T0, customer: str = CUSTOMER
) -> dict[str, Any]:
    item = {
        "id": f"si_{sub_id}",
        "object": "subscription_item",
        "current_period_start": start,
        "current_period_end": start + 30 * 86_400,
        "price": {"id": "price_sensors", "recurring": {"usage_type": "metered"}},
    }
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": False,
        "items": {"object": "list", "data": [item]},
    }


def invoice(invoice_id: str, sub_id: str, *, customer: str = CUSTOMER) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "amount_due": 4200,
        "amount_paid": 0,
        "currency": "eur",
        "parent": {"subscription_details": {"subscription": sub_id}},
    }


async def send(
    client: httpx.AsyncClient,
    event_type: str,
    obj: dict[str, Any],
    at: int,
    *,
    secret: str = SECRET,
) -> None:
    answer = await deliver(client, make_event(event_type, obj, created=at), secret=secret)
    assert answer.status_code == 200, answer.text


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
