"""Billing data for the /ops pages, written with plain SQL: two organizations, a ledger with
every status (and rows older than 24 h), a subscription, webhook events and the state changes
they made. The expected numbers are what the tests query back, never what a page computes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work

CUSTOMER = "cus_ops_1"
FAILED_REASON = "Stripe refused the meter event (400): No such customer: 'cus_ops_1'"
# Stands in for whatever a raw event payload holds: no page may show it.
RAW_PAYLOAD_MARKER = "raw-payload-marker-6d1f"


@dataclass(frozen=True)
class Seeded:
    organization_id: uuid.UUID
    other_organization_id: uuid.UUID
    period_start: datetime
    period_end: datetime
    windows: list[datetime]  # window starts of organization's ledger, oldest first


async def seed_billing(sessions: SessionFactory, *, windows: int = 30) -> Seeded:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    period_start = now - timedelta(days=10)
    period_end = now + timedelta(days=20)
    org = uuid.uuid4()
    other = uuid.uuid4()
    starts = [now - timedelta(hours=hours) for hours in range(windows, 0, -1)]
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO organizations (id, name, stripe_customer_id) VALUES"
                " (:org, 'Acme Cold Storage', :customer), (:other, 'Borealis Labs', NULL)"
            ),
            {"org": org, "other": other, "customer": CUSTOMER},
        )
        rows = []
        for index, start in enumerate(starts):
            for event_name in ("active_sensors", "temperature_readings"):
                status, error, skip, attempts = "sent", None, None, 1
                if index == len(starts) - 1:
                    status, attempts = "pending", 0
                elif index == len(starts) - 2 and event_name == "temperature_readings":
                    status, error, attempts = "failed", FAILED_REASON, 1
                elif index == len(starts) - 3 and event_name == "temperature_readings":
                    status, error, attempts = "sent", None, 3  # two failed tries, then accepted
                elif index == 0 and event_name == "temperature_readings":
                    status, skip, attempts = "skipped", "no readings in the window", 0
                rows.append(
                    {
                        "org": org,
                        "event": event_name,
                        "start": start,
                        "end": start + timedelta(hours=1),
                        "value": 3 + index % 2 if event_name == "active_sensors" else 100 + index,
                        "customer": CUSTOMER,
                        "identifier": f"sb.{org}.{event_name}.{int(start.timestamp())}",
                        "status": status,
                        "skip": skip,
                        "attempts": attempts,
                        "error": error,
                        "attempted": start + timedelta(hours=1, seconds=5) if attempts else None,
                        "sent": start + timedelta(hours=1, seconds=5) if status == "sent" else None,
                        # Rows of the first windows were closed more than 24 h ago.
                        "created": start + timedelta(hours=1, seconds=2),
                    }
                )
        await session.execute(
            text(
                "INSERT INTO meter_reports (organization_id, event_name, window_start, window_end,"
                " value, stripe_customer_id, identifier, status, skip_reason, attempts,"
                " last_error, last_attempt_at, sent_at, created_at) VALUES (:org, :event,"
                " :start, :end, :value, :customer, :identifier, :status, :skip, :attempts,"
                " :error, :attempted, :sent, :created)"
            ),
            rows,
        )
        await session.execute(
            text(
                "INSERT INTO metering_cursors (organization_id, closed_through) VALUES (:org, :at)"
            ),
            {"org": org, "at": now},
        )
        await session.execute(
            text(
                "INSERT INTO stripe_subscriptions (id, stripe_customer_id, status,"
                " current_period_start, current_period_end, metered_price_ids, last_event_id,"
                " last_event_created) VALUES ('sub_ops_1', :customer, 'active', :start, :end,"
                " ARRAY['price_sensors', 'price_readings'], 'evt_ops_sub_2', :created)"
            ),
            {
                "customer": CUSTOMER,
                "start": period_start,
                "end": period_end,
                "created": now - timedelta(hours=2),
            },
        )
        events = [
            ("evt_ops_sub_1", "customer.subscription.created", now - timedelta(hours=5)),
            ("evt_ops_sub_2", "customer.subscription.updated", now - timedelta(hours=2)),
            ("evt_ops_inv_1", "invoice.paid", now - timedelta(hours=1)),
            ("evt_ops_chg_1", "charge.succeeded", now - timedelta(minutes=30)),
            ("evt_ops_old_1", "invoice.paid", now - timedelta(days=3)),
        ]
        await session.execute(
            text(
                "INSERT INTO stripe_events (event_id, event_type, processed_at)"
                " VALUES (:id, :type, :at)"
            ),
            [{"id": event_id, "type": kind, "at": at} for event_id, kind, at in events],
        )
        await session.execute(
            text(
                "INSERT INTO billing_state_changes (organization_id, stripe_object_id, event_id,"
                " event_type, change, summary, created_at) VALUES (:org, 'sub_ops_1', :event,"
                " :type, CAST(:change AS jsonb), :summary, :at)"
            ),
            [
                {
                    "org": org,
                    "event": "evt_ops_sub_1",
                    "type": "customer.subscription.created",
                    "change": f'{{"status": "incomplete", "note": "{RAW_PAYLOAD_MARKER}"}}',
                    "summary": "subscription sub_ops_1 created: incomplete",
                    "at": now - timedelta(hours=5),
                },
                {
                    "org": org,
                    "event": "evt_ops_sub_2",
                    "type": "customer.subscription.updated",
                    "change": f'{{"status": "active", "note": "{RAW_PAYLOAD_MARKER}"}}',
                    "summary": "subscription sub_ops_1 status incomplete -> active",
                    "at": now - timedelta(hours=2),
                },
            ],
        )
        # Stripe's meter error events: two codes in the last 24 h (one error it named no row
        # for), and one older event the overview must leave out.
        await session.execute(
            text(
                "INSERT INTO meter_error_reports (stripe_event_id, event_type, code, error_count,"
                " organization_id, sample_message, event_created_at) VALUES (:event,"
                " 'v1.billing.meter.error_report_triggered', :code, :count, :org, :message, :at)"
            ),
            [
                {
                    "event": "evtmet_ops_1",
                    "code": "meter_event_customer_not_found",
                    "count": 3,
                    "org": org,
                    "message": "No such customer: 'cus_ops_1'",
                    "at": now - timedelta(hours=3),
                },
                {
                    "event": "evtmet_ops_1",
                    "code": "meter_event_customer_not_found",
                    "count": 2,
                    "org": None,
                    "message": None,
                    "at": now - timedelta(hours=3),
                },
                {
                    "event": "evtmet_ops_2",
                    "code": "meter_event_invalid_value",
                    "count": 1,
                    "org": org,
                    "message": "Value must be an integer",
                    "at": now - timedelta(hours=1),
                },
                {
                    "event": "evtmet_ops_old",
                    "code": "meter_event_invalid_value",
                    "count": 7,
                    "org": org,
                    "message": "Value must be an integer",
                    "at": now - timedelta(days=2),
                },
            ],
        )
    return Seeded(org, other, period_start, period_end, starts)
