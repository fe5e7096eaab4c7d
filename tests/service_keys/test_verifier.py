"""The per-request key check: verified keys are remembered for a few seconds, revocation
takes effect once that time has passed, and `last_used_at` is written about once a minute."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.service_keys import (
    Caller,
    Refusal,
    ServiceKeyVerifier,
    create_service_key,
    issue_service_key,
    revoke_service_key,
)
from sensor_billing.service_keys.verifier import (
    LAST_USED_WRITE_INTERVAL_SECONDS,
    VERIFIED_KEY_CACHE_SECONDS,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(sessions: SessionFactory, clock: Clock) -> ServiceKeyVerifier:
    return ServiceKeyVerifier(sessions, clock=clock)


@pytest.fixture
def key_lookups(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every lookup of a key by its digest, as the database receives it."""
    seen: list[str] = []

    def note(conn: Connection, cursor: object, statement: str, *args: object) -> None:
        if "WHERE service_keys.secret_sha256" in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", note)


async def test_a_verified_key_is_not_looked_up_again_within_the_cache_time(
    sessions: SessionFactory,
    verifier: ServiceKeyVerifier,
    clock: Clock,
    key_lookups: list[str],
) -> None:
    secret = await issue_service_key(sessions, "backend")

    callers = []
    for _ in range(50):
        callers.append(await verifier.identify(secret))
        clock.now += VERIFIED_KEY_CACHE_SECONDS / 100
    clock.now += VERIFIED_KEY_CACHE_SECONDS
    callers.append(await verifier.identify(secret))

    assert {type(caller) for caller in callers} == {Caller}
    assert len(key_lookups) == 2  # the first request, and the first after the cache time


async def test_a_revoked_key_is_refused_once_the_cache_time_has_passed(
    sessions: SessionFactory, verifier: ServiceKeyVerifier, clock: Clock
) -> None:
    async with unit_of_work(sessions) as session:
        issued = await create_service_key(session, "backend-old")
    assert isinstance(await verifier.identify(issued.secret), Caller)
    async with unit_of_work(sessions) as session:
        await revoke_service_key(session, issued.id)

    within = await verifier.identify(issued.secret)
    clock.now += VERIFIED_KEY_CACHE_SECONDS
    after = await verifier.identify(issued.secret)

    assert isinstance(within, Caller)
    assert after == Refusal(
        f"revoked key {issued.id} (backend-old)", "the service key is unknown or revoked"
    )


async def test_a_key_revoked_before_its_first_use_is_refused_at_once(
    sessions: SessionFactory, verifier: ServiceKeyVerifier
) -> None:
    async with unit_of_work(sessions) as session:
        issued = await create_service_key(session, "backend")
    async with unit_of_work(sessions) as session:
        await revoke_service_key(session, issued.id)

    refusal = await verifier.identify(issued.secret)

    assert isinstance(refusal, Refusal)
    assert refusal.reason.startswith("revoked key")


@pytest.mark.parametrize(
    ("presented", "reason"),
    [
        (None, "no bearer token"),
        ("sk_test_standin", "not a service key"),
        ("sbk_" + "x" * 200, "not a service key"),
        ("sbk_madeup", "unknown key"),
    ],
)
async def test_a_missing_malformed_or_unknown_key_is_refused_without_naming_it(
    sessions: SessionFactory, verifier: ServiceKeyVerifier, presented: str | None, reason: str
) -> None:
    refusal = await verifier.identify(presented)

    assert isinstance(refusal, Refusal)
    assert refusal.reason == reason
    assert presented is None or presented not in f"{refusal.reason} {refusal.message}"


async def test_last_used_is_written_at_most_once_a_minute_per_key(
    sessions: SessionFactory, verifier: ServiceKeyVerifier, clock: Clock
) -> None:
    secret = await issue_service_key(sessions, "backend")

    await verifier.identify(secret)
    await verifier.aclose()
    first = await last_used(sessions)
    for _ in range(20):
        clock.now += LAST_USED_WRITE_INTERVAL_SECONDS / 40
        await verifier.identify(secret)
    await verifier.aclose()
    unchanged = await last_used(sessions)
    clock.now += LAST_USED_WRITE_INTERVAL_SECONDS / 2
    await verifier.identify(secret)
    await verifier.aclose()
    moved = await last_used(sessions)

    assert first is not None
    assert unchanged == first
    assert moved is not None
    assert moved > first


async def last_used(sessions: SessionFactory) -> datetime | None:
    async with sessions() as session:
        moment: datetime | None = await session.scalar(
            text("SELECT last_used_at FROM service_keys")
        )
        return moment
