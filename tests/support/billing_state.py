"""Billing state built the way production builds it: organizations in PostgreSQL, and Stripe
subscription and invoice events (in the documented 2025-03-31 shape) delivered, signed, to the
app's webhook endpoint."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import Organization
from sensor_billing.stripe_api.setup import price_lookup_key
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


async def add_notices(
    sessions: SessionFactory,
    organization_id: uuid.UUID,
    enqueued_ages_in_days: list[float | None],
    *,
    now: datetime,
    made_days_before: float = 0,
) -> None:
    """Entitlement notices `notice-<index>` (event `evt_<index>`), each marked added to the
    queue `age` days before `now` (None: never marked), made `made_days_before` days before
    that (or before `now` when never marked)."""
    async with unit_of_work(sessions) as session:
        for index, age in enumerate(enqueued_ages_in_days):
            enqueued_at = None if age is None else now - timedelta(days=age)
            created_at = (enqueued_at or now) - timedelta(days=made_days_before)
            await session.execute(
                text(
                    "INSERT INTO entitlement_notices (job_id, organization_id, event_id,"
                    " entitled, reason, decided_at, created_at, enqueued_at)"
                    " VALUES (:job, :org, :event, true, 'active', :made, :made, :enqueued)"
                ),
                {
                    "job": f"notice-{index}",
                    "org": organization_id,
                    "event": f"evt_{index}",
                    "made": created_at,
                    "enqueued": enqueued_at,
                },
            )


def price_object(
    price_id: str, event_name: str, unit_amount_decimal: str, *, currency: str = "eur"
) -> dict[str, Any]:
    """A metered Price as Stripe embeds it in a subscription item, made by `stripe setup`
    (its lookup key names the meter event)."""
    amount = Decimal(unit_amount_decimal)
    return {
        "id": price_id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "currency": currency,
        "lookup_key": price_lookup_key(event_name, currency),
        "product": "prod_monitoring",
        "recurring": {
            "interval": "month",
            "interval_count": 1,
            "meter": f"mtr_{event_name}",
            "usage_type": "metered",
        },
        "type": "recurring",
        "unit_amount": int(amount) if amount == amount.to_integral_value() else None,
        "unit_amount_decimal": unit_amount_decimal,
    }


SENSORS = price_object("price_sensors", "active_sensors", "500")
READINGS = price_object("price_readings", "temperature_readings", "0.01")
MINIMAL_PRICE = {"id": "price_sensors", "recurring": {"usage_type": "metered"}}


def subscription(
    sub_id: str,
    status: str,
    *,
    start: int = T0,
    customer: str = CUSTOMER,
    prices: list[dict[str, Any]] | None = None,
    cancel_at_period_end: bool = False,
) -> dict[str, Any]:
    """A subscription in the 2025-03-31 shape (periods on the items), with these prices."""
    items = [
        {
            "id": f"si_{sub_id}_{index}",
            "object": "subscription_item",
            "current_period_start": start,
            "current_period_end": start + 30 * 86_400,
            "price": price,
        }
        for index, price in enumerate(prices or [MINIMAL_PRICE])
    ]
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": cancel_at_period_end,
        "items": {"object": "list", "data": items},
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
