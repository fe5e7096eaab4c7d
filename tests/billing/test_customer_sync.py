"""`sync_customers`: a Stripe customer per organization without one, stored, never twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
import stripe
from sqlalchemy import select, update

from sensor_billing.billing import customers_repository
from sensor_billing.billing.customers import sync_customers
from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.db.schema import Organization
from sensor_billing.devtools.stripe_standin import DEFAULT_API_KEY, RunningStandin, run_in_thread
from sensor_billing.metering import repository as metering_repository
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
    crashed = await sync_customer_and_crash(sessions, client, acme)

    await sync_customers(sessions, client)

    assert (await stored_customers(sessions))[acme] == crashed
    assert list(standin.state.customers) == [crashed]
    assert standin.state.counters_snapshot().idempotent_replays == 1


async def test_a_rerun_after_a_crash_and_a_rename_gets_the_same_customer(
    sessions: SessionFactory, client: stripe.StripeClient, standin: RunningStandin
) -> None:
    (acme,) = await add_organizations(sessions, "Acme")
    # A run that created the customer and died before committing its id...
    crashed = await sync_customer_and_crash(sessions, client, acme)
    # ...and the organization was renamed before the next run.
    async with unit_of_work(sessions) as session:
        await session.execute(
            update(Organization).where(Organization.id == acme).values(name="Acme Industries")
        )

    summary = await sync_customers(sessions, client)

    assert (await stored_customers(sessions))[acme] == crashed
    assert [c.customer_id for c in summary.created] == [crashed]
    assert list(standin.state.customers) == [crashed]
    assert standin.state.customers[crashed].name == "Acme Industries"


async def sync_customer_and_crash(
    sessions: SessionFactory, client: stripe.StripeClient, organization_id: uuid.UUID
) -> str:
    """What `sync_customers` sends for the organization, with the commit that never came."""
    created: list[str] = []

    class CrashBeforeCommitError(Exception):
        pass

    async def store_then_crash(session: object, organization: uuid.UUID, customer: str) -> None:
        created.append(customer)
        raise CrashBeforeCommitError

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(customers_repository, "store_customer_id", store_then_crash)
        with pytest.raises(CrashBeforeCommitError):
            await sync_customers(sessions, client)
    assert (await stored_customers(sessions))[organization_id] is None
    return created[0]


async def test_an_organization_given_a_new_customer_after_a_deletion_is_metered_again(
    sessions: SessionFactory, client: stripe.StripeClient, standin: RunningStandin
) -> None:
    (acme,) = await add_organizations(sessions, "Acme", customer_id="cus_deleted")
    # customer.deleted marked it; the operator cleared the id, as the README says.
    async with unit_of_work(sessions) as session:
        await session.execute(
            update(Organization)
            .where(Organization.id == acme)
            .values(stripe_customer_id=None, stripe_customer_deleted_at=datetime.now(UTC))
        )

    summary = await sync_customers(sessions, client)

    assert [c.organization_id for c in summary.created] == [acme]
    async with sessions() as session:
        assert acme not in await metering_repository.organizations_without_customer(session, 10)
