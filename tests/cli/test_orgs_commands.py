"""`sensor-billing orgs show`: an organization's subscription and entitlement, read from the
test database."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from tests.cli.conftest import run_cli
from tests.cli.test_output import COMMAND, command_env
from tests.support.billing_state import new_organization
from tests.support.terminal import run_in_terminal

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


async def add_metered_subscription(
    sessions: SessionFactory, sub_id: str, customer: str, start: datetime
) -> None:
    async with unit_of_work(sessions) as session:
        await session.execute(
            text(
                "INSERT INTO stripe_subscriptions (id, stripe_customer_id, status,"
                " current_period_start, current_period_end, metered_price_ids, last_event_id,"
                " last_event_created) VALUES (:id, :customer, 'active', :start, :end,"
                " ARRAY['price_sensors', 'price_readings'], 'evt_cli_dup', :start)"
            ),
            {"id": sub_id, "customer": customer, "start": start, "end": start + timedelta(30)},
        )


async def test_show_names_a_second_live_metered_subscription(cli_env: SessionFactory) -> None:
    org = await new_organization(cli_env, "cus_twice", "Aurora Dairy")
    await add_metered_subscription(cli_env, "sub_first", "cus_twice", PERIOD_START)
    await add_metered_subscription(cli_env, "sub_second", "cus_twice", PERIOD_START + timedelta(1))

    outcome = run_cli("orgs", "show", str(org))
    as_json = run_cli("orgs", "show", str(org), "--json")

    assert outcome.exit_code == as_json.exit_code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    # The standing decides by the newest period: sub_second; the other is named below it.
    assert "subscription  sub_second active" in lines
    assert any(line.startswith("duplicate     2 live subscriptions") for line in lines), lines
    assert "also live     sub_first active" in lines
    shown = json.loads(as_json.stdout)["duplicateSubscriptions"]
    assert [(s["id"], s["status"]) for s in shown] == [
        ("sub_first", "active"),
        ("sub_second", "active"),
    ]


async def test_show_of_an_organization_with_one_subscription_names_no_duplicate(
    cli_env: SessionFactory,
) -> None:
    org = await new_organization(cli_env, "cus_once")
    await add_metered_subscription(cli_env, "sub_only", "cus_once", PERIOD_START)

    outcome = run_cli("orgs", "show", str(org), "--json")

    assert outcome.exit_code == 0, outcome.stderr
    assert json.loads(outcome.stdout)["duplicateSubscriptions"] == []


async def test_on_a_terminal_the_duplicate_lines_are_red(
    cli_env: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    org = await new_organization(cli_env, "cus_twice", "Aurora Dairy")
    await add_metered_subscription(cli_env, "sub_first", "cus_twice", PERIOD_START)
    await add_metered_subscription(cli_env, "sub_second", "cus_twice", PERIOD_START + timedelta(1))

    code, out = run_in_terminal(
        [COMMAND, "orgs", "show", str(org)],
        env=command_env(database_url),
        cwd=tmp_path,
        stdout_to_terminal=True,
    )

    assert code == 0, out
    assert re.search(r"\x1b\[31m\s*duplicate ", out), out
    assert re.search(r"\x1b\[31m\s*also live +sub_first", out), out
