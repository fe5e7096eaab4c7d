"""`sensor-billing keys ...`: the service keys that may call the /v1 API."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.cli.errors import reports_errors
from sensor_billing.cli.output import stdout_console
from sensor_billing.db import create_engine, create_session_factory, unit_of_work
from sensor_billing.db.health import require_database
from sensor_billing.errors import InvalidInputError
from sensor_billing.service_keys import (
    IssuedServiceKey,
    Revocation,
    ServiceKeyInfo,
    create_service_key,
    list_service_keys,
    revoke_service_key,
)
from sensor_billing.service_keys.service import checked_name
from sensor_billing.service_keys.verifier import VERIFIED_KEY_CACHE_SECONDS
from sensor_billing.settings import get_settings

app = typer.Typer(
    help="Service keys for the /v1 API (Authorization: Bearer sbk_...).", no_args_is_help=True
)
console = stdout_console()

T = TypeVar("T")


def in_one_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one unit of work on DATABASE_URL, with an engine of its own."""
    url = get_settings().database_url
    require_database(url)

    async def run() -> T:
        engine = create_engine(url, pool_size=1, max_overflow=0)
        try:
            async with unit_of_work(create_session_factory(engine)) as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@app.command()
@reports_errors
def create(
    name: str = typer.Option(..., "--name", help="Who uses the key, e.g. saas-backend-2026-12."),
    as_json: bool = typer.Option(False, "--json", help="Print the new key as JSON."),
) -> None:
    """Make a key and print its secret, once: only its SHA-256 digest is stored."""
    name = checked_name(name)

    async def work(session: AsyncSession) -> IssuedServiceKey:
        return await create_service_key(session, name)

    issued = in_one_transaction(work)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "id": str(issued.id),
                    "name": issued.name,
                    "secret": issued.secret,
                    "created_at": issued.created_at.isoformat(),
                }
            )
        )
        return
    console.print(f"created service key {issued.id} ({issued.name})", highlight=False)
    typer.echo(issued.secret)
    console.print("Store it now: the secret is not shown again.", highlight=False)


def _moment(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


@app.command("list")
@reports_errors
def list_keys(
    active: bool = typer.Option(False, "--active", help="Leave out revoked keys."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Every key, oldest first: id, name, the secret's last four characters, created, last
    used (written about once a minute), revoked."""

    async def work(session: AsyncSession) -> list[ServiceKeyInfo]:
        return await list_service_keys(session, include_revoked=not active)

    keys = in_one_transaction(work)
    if as_json:
        typer.echo(json.dumps([key.to_json() for key in keys], indent=2))
        return
    if not keys:
        console.print("no service keys (make one with `sensor-billing keys create --name NAME`)")
        return
    table = Table("id", "name", "key", "created", "last used", "revoked")
    for key in keys:
        table.add_row(
            str(key.id),
            key.name,
            key.masked,
            _moment(key.created_at),
            _moment(key.last_used_at),
            _moment(key.revoked_at),
        )
    console.print(table)


@app.command()
@reports_errors
def revoke(
    key_id: str = typer.Argument(..., help="The key's id, as `keys list` shows it."),
) -> None:
    """Revoke a key for good; API processes refuse it within a few seconds."""
    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        raise InvalidInputError(f"KEY_ID {key_id!r} is not a key id (a UUID)") from None

    async def work(session: AsyncSession) -> Revocation:
        return await revoke_service_key(session, parsed)

    revocation = in_one_transaction(work)
    key = revocation.key
    if revocation.already_revoked:
        console.print(
            f"{key.id} ({key.name}) was already revoked at {_moment(key.revoked_at)}",
            highlight=False,
        )
        return
    console.print(
        f"revoked {key.id} ({key.name}); every API process refuses it within "
        f"{VERIFIED_KEY_CACHE_SECONDS:g} s",
        highlight=False,
    )
