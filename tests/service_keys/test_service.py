"""Making, listing and revoking service keys: the secret is shown once and never stored."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from sqlalchemy import text

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.errors import InvalidInputError
from sensor_billing.service_keys import (
    SERVICE_KEY_PREFIX,
    create_service_key,
    issue_service_key,
    list_service_keys,
    revoke_service_key,
)


async def test_a_new_key_is_a_long_random_secret_of_which_only_the_digest_is_stored(
    sessions: SessionFactory,
) -> None:
    async with unit_of_work(sessions) as session:
        issued = await create_service_key(session, "  saas-backend  ")
        other = await create_service_key(session, "saas-backend")

    assert issued.secret.startswith(SERVICE_KEY_PREFIX)
    assert len(issued.secret) == len(SERVICE_KEY_PREFIX) + 43  # 32 bytes, URL-safe base64
    assert issued.secret != other.secret
    assert issued.name == "saas-backend"
    async with sessions() as session:
        row = (
            await session.execute(
                text("SELECT * FROM service_keys WHERE id = :id"), {"id": issued.id}
            )
        ).one()
    assert row.secret_sha256 == hashlib.sha256(issued.secret.encode()).digest()
    assert row.secret_last4 == issued.secret[-4:]
    stored = " ".join(str(value) for value in row)
    assert issued.secret not in stored
    assert issued.secret.removeprefix(SERVICE_KEY_PREFIX)[:-4] not in stored


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
async def test_a_key_needs_a_name_of_1_to_100_characters(
    sessions: SessionFactory, name: str
) -> None:
    with pytest.raises(InvalidInputError, match="--name"):
        async with unit_of_work(sessions) as session:
            await create_service_key(session, name)
    async with sessions() as session:
        assert await list_service_keys(session) == []


async def test_issuing_a_key_for_a_script_returns_a_secret_that_is_already_stored(
    sessions: SessionFactory,
) -> None:
    secret = await issue_service_key(sessions, "demo")

    async with sessions() as session:
        (key,) = await list_service_keys(session)
    assert (key.name, key.masked) == ("demo", f"sbk_...{secret[-4:]}")


async def test_a_revoked_key_is_listed_as_revoked_and_left_out_of_the_active_ones(
    sessions: SessionFactory,
) -> None:
    async with unit_of_work(sessions) as session:
        old = await create_service_key(session, "backend-2026-11")
    async with unit_of_work(sessions) as session:
        new = await create_service_key(session, "backend-2026-12")

    async with unit_of_work(sessions) as session:
        revocation = await revoke_service_key(session, old.id)

    assert not revocation.already_revoked
    assert revocation.key.revoked_at is not None
    async with sessions() as session:
        every = await list_service_keys(session)
        active = await list_service_keys(session, include_revoked=False)
    assert [(k.id, k.revoked_at is not None) for k in every] == [(old.id, True), (new.id, False)]
    assert [k.id for k in active] == [new.id]


async def test_revoking_a_key_twice_keeps_the_first_revocation_time(
    sessions: SessionFactory,
) -> None:
    async with unit_of_work(sessions) as session:
        issued = await create_service_key(session, "backend")
    async with unit_of_work(sessions) as session:
        first = await revoke_service_key(session, issued.id)

    async with unit_of_work(sessions) as session:
        second = await revoke_service_key(session, issued.id)

    assert second.already_revoked
    assert second.key.revoked_at == first.key.revoked_at


async def test_revoking_a_key_that_does_not_exist_is_refused_naming_the_id(
    sessions: SessionFactory,
) -> None:
    missing = uuid.uuid4()
    with pytest.raises(InvalidInputError, match=str(missing)):
        async with unit_of_work(sessions) as session:
            await revoke_service_key(session, missing)
