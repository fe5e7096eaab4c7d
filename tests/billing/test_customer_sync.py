"""`sync_customers`: a Stripe customer per organization without one, stored, never twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import stripe
from sqlalchemy import select

from sensor_billing.billing.customers import customer_idempotency_key, sync_customers
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import Organization
from sensor_billing.devtools.stripe_standin import DEFAULT_API_KEY, RunningStandin, run_in_thread
from sensor_billing.settings import load_settings
from sensor_billing.stripe_api.client import create_stripe_client


@pytest.fixture(scope="module")
def running_standin() -> Iterator[RunningStandin]:
    with run_in_thread(api_keys=[DEFAULT_API_KEY]) as standin:
        yield standin


@pytest.fixture
def standin(running_standin: RunningStandin) -> RunningStandin:
    running_standin.state.reset()
    return running_standin


@pytest.fixture
async def client(standin: RunningStandin) -> AsyncIterator[stripe.StripeClient]:
    settings = load_settings(stripe_api_key=DEFAULT_API_KEY, stripe_api_base=standin.url)
    http = stripe.HTTPXClient(timeout=5.0)
    yield create_stripe_client(settings, http_client=http)
    await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in the SDK


async def add_organizations(
    sessions: SessionFactory, *names: str, customer_id: str | None = None
) -> list[uuid.UUID]:
    async with unit_of_work(sessions) as session:
        rows = [Organization(name=name, stripe_customer_id=customer_id) for name in names]
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]


async def stored_customers(sessions: SessionFactory) -> dict[uuid.UUID, str | None]:
    async with sessions() as session:
        rows = await session.execute(select(Organization.id, Organization.stripe_customer_id))
        return {row.id: row.stripe_customer_id for row in rows}


async def test_customers_are_created_and_stored_for_organizations_without_one(
    sessions: SessionFactory, client: stripe.StripeClient, standin: RunningStandin
) -> None:
    acme, globex = await add_organizations(sessions, "Acme", "Globex")
    (linked,) = await add_organizations(sessions, "Initech", customer_id="cus_existing")

    summary = await sync_customers(sessions, client)

    stored = await stored_customers(sessions)
    assert {c.organization_id for c in summary.created} == {acme, globex}
    assert stored[linked] == "cus_existing"
    customers = standin.state.customers
    for organization in (acme, globex):
        customer = customers[stored[organization] or ""]
        assert customer.metadata == {"organization_id": str(organization)}
    assert {c.name for c in customers.values()} == {"Acme", "Globex"}


async def test_a_second_sync_creates_no_customer(
    sessions: SessionFactory, client: stripe.StripeClient, standin: RunningStandin
) -> None:
    await add_organizations(sessions, "Acme", "Globex")
    await sync_customers(sessions, client)
    before = await stored_customers(sessions)

    summary = await sync_customers(sessions, client)

    assert summary.created == []
    assert await stored_customers(sessions) == before
    assert len(standin.state.customers) == 2


async def test_a_rerun_after_a_crash_gets_the_same_customer_through_the_idempotency_key(
    sessions: SessionFactory, client: stripe.StripeClient, standin: RunningStandin
) -> None:
    (acme,) = await add_organizations(sessions, "Acme")
    # A run that created the customer and died before committing its id.
    crashed = await client.v1.customers.create_async(
        {"name": "Acme", "metadata": {"organization_id": str(acme)}},
        {"idempotency_key": customer_idempotency_key(acme)},
    )

    await sync_customers(sessions, client)

    assert (await stored_customers(sessions))[acme] == crashed.id
    assert list(standin.state.customers) == [crashed.id]
    assert standin.state.counters_snapshot().idempotent_replays == 1
