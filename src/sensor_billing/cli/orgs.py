"""`sensor-billing orgs ...`: an organization's subscription and entitlement, as /ops shows them."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import typer

from sensor_billing.billing.duplicate_subscriptions import besides, duplicate_subscriptions
from sensor_billing.billing.duplicates_repository import MeteredSubscription
from sensor_billing.billing.repository import organization_id_by_customer
from sensor_billing.billing.standing import OrganizationBilling, organization_billing
from sensor_billing.cli.errors import reports_errors
from sensor_billing.cli.output import stdout_console
from sensor_billing.db import create_engine, create_session_factory, unit_of_work
from sensor_billing.db.health import require_database
from sensor_billing.errors import InvalidInputError
from sensor_billing.settings import get_settings

app = typer.Typer(help="Organizations: subscription and entitlement.", no_args_is_help=True)
console = stdout_console()


def _time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def billing_json(
    billing: OrganizationBilling, duplicates: list[MeteredSubscription]
) -> dict[str, Any]:
    standing, decision = billing.standing, billing.entitlement
    return {
        "organizationId": str(standing.organization_id),
        "name": standing.name,
        "stripeCustomerId": standing.stripe_customer_id,
        "customerDeleted": standing.customer_deleted,
        "subscription": None
        if standing.subscription_id is None
        else {
            "id": standing.subscription_id,
            "status": standing.status,
            "currentPeriodStart": _time(standing.current_period_start),
            "currentPeriodEnd": _time(standing.current_period_end),
            "cancelAtPeriodEnd": standing.cancel_at_period_end,
            "meteredPriceIds": list(standing.metered_price_ids),
            "pastDueSince": _time(standing.past_due_since),
        },
        "entitlement": {
            "entitled": decision.entitled,
            "reason": decision.reason,
            "until": _time(decision.until),
        },
        # Every live subscription with metered prices, when there are two or more.
        "duplicateSubscriptions": [
            {
                "id": subscription.id,
                "status": subscription.status,
                "currentPeriodStart": _time(subscription.current_period_start),
                "meteredPriceIds": list(subscription.metered_price_ids),
            }
            for subscription in duplicates
        ],
    }


def billing_lines(billing: OrganizationBilling, duplicates: list[MeteredSubscription]) -> list[str]:
    standing, decision = billing.standing, billing.entitlement
    customer = standing.stripe_customer_id or "none (not metered)"
    lines = [
        f"organization  {standing.name} ({standing.organization_id})",
        f"customer      {customer}{' (deleted)' if standing.customer_deleted else ''}",
    ]
    if standing.subscription_id is None:
        lines.append("subscription  none")
    else:
        cancels = " (cancels at period end)" if standing.cancel_at_period_end else ""
        lines += [
            f"subscription  {standing.subscription_id} {standing.status}{cancels}",
            f"period        {_time(standing.current_period_start) or '-'} to "
            f"{_time(standing.current_period_end) or '-'}",
            f"prices        {', '.join(standing.metered_price_ids) or '-'}",
        ]
        if standing.past_due_since:
            lines.append(f"past due      since {_time(standing.past_due_since)}")
    until = f", until {_time(decision.until)}" if decision.until else ""
    verdict = "[green]entitled[/]" if decision.entitled else "[red]not entitled[/]"
    lines.append(f"entitlement   {verdict} ({decision.reason}{until})")
    if duplicates:
        lines.append(
            f"[red]duplicate     {len(duplicates)} live subscriptions with metered prices bill "
            "the same usage; nothing was canceled (docs/operations.md)[/]"
        )
    for extra in besides(duplicates, standing.subscription_id):
        lines.append(f"[red]also live     {extra.id} {extra.status}[/]")
    return lines


@app.command()
@reports_errors
def show(
    organization: str = typer.Argument(..., help="Organization id, or its Stripe customer id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """An organization's Stripe customer, subscription and entitlement (as /ops shows them)."""
    query = organization.strip()
    organization_id = None
    if not query.startswith("cus_"):
        try:
            organization_id = uuid.UUID(query)
        except ValueError:
            raise InvalidInputError(
                f"{organization!r} is not an organization id (a UUID) or a Stripe customer id"
            ) from None
    settings = get_settings()
    require_database(settings.database_url)

    async def run() -> tuple[OrganizationBilling, list[MeteredSubscription]] | None:
        engine = create_engine(settings.database_url, pool_size=1, max_overflow=0)
        try:
            async with unit_of_work(create_session_factory(engine)) as session:
                found = organization_id or await organization_id_by_customer(session, query)
                if found is None:
                    return None
                billing = await organization_billing(
                    session, found, now=datetime.now(UTC), grace=settings.past_due_grace
                )
                if billing is None:
                    return None
                customer = billing.standing.stripe_customer_id
                return billing, await duplicate_subscriptions(session, customer)
        finally:
            await engine.dispose()

    shown = asyncio.run(run())
    if shown is None:
        raise InvalidInputError(f"no organization {query}")
    billing, duplicates = shown
    if as_json:
        typer.echo(json.dumps(billing_json(billing, duplicates), indent=2))
        return
    for line in billing_lines(billing, duplicates):
        console.print(line, highlight=False)
