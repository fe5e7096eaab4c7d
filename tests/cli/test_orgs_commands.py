"""`sensor-billing orgs show`: an organization's subscription and entitlement, read from the
test database."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from tests.cli.conftest import run_cli
from tests.support.billing_state import new_organization

NOW = datetime.now(UTC).replace(microsecond=0)
PERIOD_START = NOW - timedelta(days=10)
PERIOD_END = NOW + timedelta(days=20)


async def add_subscription(
    sessions: SessionFactory,
    customer: str,
    status: str,
    *,
    cancel_at_period_end: bool = False,
    failed_at: datetime | None = None,
) -> None:
    """A subscription row as webhooks leave it, and, with `failed_at`, its failed invoice."""
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO stripe_subscriptions (id, stripe_customer_id, status,"
                " current_period_start, current_period_end, metered_price_ids,"
                " cancel_at_period_end, last_event_id, last_event_created) VALUES"
                " (:id, :customer, :status, :start, :end, ARRAY['price_sensors'], :cancel,"
                " 'evt_cli_1', :start)"
            ),
            {
                "id": f"sub_{customer}",
                "customer": customer,
                "status": status,
                "start": PERIOD_START,
                "end": PERIOD_END,
                "cancel": cancel_at_period_end,
            },
        )
        if failed_at is not None:
            await session.execute(
                text(
                    "INSERT INTO stripe_invoices (id, stripe_customer_id, stripe_subscription_id,"
                    " payment_status, first_failed_at, last_event_id, last_event_created)"
                    " VALUES (:id, :customer, :sub, 'payment_failed', :at, 'evt_cli_2', :at)"
                ),
                {
                    "id": f"in_{customer}",
                    "customer": customer,
                    "sub": f"sub_{customer}",
                    "at": failed_at,
                },
            )


async def test_show_prints_the_subscription_and_its_entitlement(cli_env: SessionFactory) -> None:
    org = await new_organization(cli_env, "cus_cli", "Aurora Dairy")
    await add_subscription(cli_env, "cus_cli", "active", cancel_at_period_end=True)

    outcome = run_cli("orgs", "show", str(org))

    assert outcome.exit_code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert lines[0] == f"organization  Aurora Dairy ({org})"
    assert "subscription  sub_cus_cli active (cancels at period end)" in lines
    assert f"period        {PERIOD_START.isoformat()} to {PERIOD_END.isoformat()}" in lines
    assert f"entitlement   entitled (active, until {PERIOD_END.isoformat()})" in lines


async def test_show_finds_an_organization_by_its_stripe_customer(
    cli_env: SessionFactory,
) -> None:
    org = await new_organization(cli_env, "cus_cli")
    await add_subscription(cli_env, "cus_cli", "past_due", failed_at=NOW - timedelta(days=8))

    outcome = run_cli("orgs", "show", "cus_cli", "--json")

    assert outcome.exit_code == 0, outcome.stderr
    shown = json.loads(outcome.stdout)
    assert shown["organizationId"] == str(org)
    assert shown["subscription"]["status"] == "past_due"
    assert shown["subscription"]["pastDueSince"] == (NOW - timedelta(days=8)).isoformat()
    assert shown["entitlement"] == {
        "entitled": False,
        "reason": "past_due_grace_ended",
        "until": None,
    }


async def test_show_of_an_organization_that_never_subscribed_says_so(
    cli_env: SessionFactory,
) -> None:
    org = await new_organization(cli_env, None)

    outcome = run_cli("orgs", "show", str(org))

    assert outcome.exit_code == 0, outcome.stderr
    assert "customer      none (not metered)" in outcome.stdout
    assert "subscription  none" in outcome.stdout
    assert "entitlement   not entitled (no_subscription)" in outcome.stdout


async def test_show_of_an_unknown_organization_exits_2_naming_it(
    cli_env: SessionFactory,
) -> None:
    unknown = uuid.uuid4()
    outcome = run_cli("orgs", "show", str(unknown))
    assert outcome.exit_code == 2
    assert f"no organization {unknown}" in outcome.stderr


async def test_show_of_something_that_is_not_an_id_exits_2_before_reading_anything(
    cli_env: SessionFactory,
) -> None:
    outcome = run_cli("orgs", "show", "acme")
    assert outcome.exit_code == 2
    assert "'acme' is not an organization id (a UUID) or a Stripe customer id" in outcome.stderr
