"""SQL for billing state. Nothing here commits: the caller's unit of work does.

Each handled webhook runs about five of these in one transaction. As ORM loads and flushes
they were most of a delivery's CPU (about 2.5 ms of it); as SQLAlchemy Core on the session
still about 1.5 ms, most of it SQLAlchemy's execution itself. So they are Core statements,
compiled once and run on the driver of a `db.driver.driver_unit_of_work` (db/driver.py has the
measurements). Rows come back as `StoredRow`s: read-only, the columns as attributes.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, any_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sensor_billing.billing.stripe_objects import PriceSnapshot
from sensor_billing.db.driver import Driver, DriverStatement, Record
from sensor_billing.db.schema import (
    BillingStateChange,
    Organization,
    StripeInvoice,
    StripePrice,
    StripeSubscription,
)


def table_of(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


SUBSCRIPTIONS = table_of(StripeSubscription)
INVOICES = table_of(StripeInvoice)
_organizations = table_of(Organization)
_changes = table_of(BillingStateChange)
_prices = table_of(StripePrice)


class StoredRow:
    """A row as read, its columns as attributes (an asyncpg Record is read by key only)."""

    __slots__ = ("_record",)

    def __init__(self, record: Record) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        try:
            return self._record[name]
        except KeyError:
            raise AttributeError(name) from None

    def replaced(self, **changes: Any) -> StoredRow:
        """The row as it is once `changes` are written."""
        merged: dict[str | int, Any] = dict(self._record.items())
        merged.update(changes)
        return StoredRow(merged)


# Locked in the order given (unnest's): callers sort, so two groups cannot deadlock.
LOCK_STRIPE_OBJECTS_SQL = (
    "SELECT pg_advisory_xact_lock(hashtextextended(stripe_id, 0))"
    " FROM unnest($1::text[]) AS stripe_id"
)


async def lock_stripe_objects(connection: Driver, stripe_ids: Sequence[str]) -> None:
    """Serialise writers of these Stripe objects until the transaction ends, in one
    statement, in id order.

    Two different events about one object (say two subscription updates) can arrive at the
    same moment; without this, both could read the same watermark and the older one could win.
    The rows are read by a later statement: one that waited here would still read the
    snapshot it started with, from before the other writer committed.
    """
    await connection.execute(LOCK_STRIPE_OBJECTS_SQL, sorted(set(stripe_ids)))


def _by_ids(table: Table) -> DriverStatement:
    return DriverStatement(select(table).where(table.c.id == any_(bindparam("stripe_ids"))))


SUBSCRIPTIONS_BY_ID = _by_ids(SUBSCRIPTIONS)
INVOICES_BY_ID = _by_ids(INVOICES)


async def _rows_by_id(
    statement: DriverStatement, connection: Driver, stripe_ids: Sequence[str]
) -> dict[str, StoredRow]:
    rows = await statement.fetch(connection, {"stripe_ids": list(stripe_ids)})
    return {row["id"]: StoredRow(row) for row in rows}


async def subscriptions_by_id(
    connection: Driver, stripe_ids: Sequence[str]
) -> dict[str, StoredRow]:
    return await _rows_by_id(SUBSCRIPTIONS_BY_ID, connection, stripe_ids)


async def invoices_by_id(connection: Driver, stripe_ids: Sequence[str]) -> dict[str, StoredRow]:
    return await _rows_by_id(INVOICES_BY_ID, connection, stripe_ids)


def _upsert(table: Table, columns: tuple[str, ...]) -> Any:
    """`INSERT ... ON CONFLICT (id) DO UPDATE` of these columns."""
    statement = insert(table).values({name: bindparam(name) for name in columns})
    changed = {name: statement.excluded[name] for name in columns if name != "id"}
    # ON CONFLICT DO UPDATE does not apply the column's `onupdate`: set it here.
    return statement.on_conflict_do_update(
        index_elements=[table.c.id], set_={**changed, "updated_at": func.now()}
    )


@functools.lru_cache(maxsize=64)
def _save_statement(table: Table, columns: tuple[str, ...], logged: bool) -> DriverStatement:
    """The upsert, built once per column set; `logged`: with the change log's row, in the same
    statement (a data-modifying CTE runs whether or not the outer statement reads it)."""
    upsert = _upsert(table, columns)
    if not logged:
        return DriverStatement(upsert)
    return DriverStatement(RECORD_CUSTOMER_CHANGE.add_cte(upsert.cte("saved")))


@dataclass(frozen=True, slots=True)
class LoggedChange:
    """A `billing_state_changes` row, for the organization holding `customer_id` now (if any)."""

    customer_id: str
    event_id: str
    event_type: str
    change: dict[str, Any]
    summary: str


async def save_states(
    connection: Driver, states: Sequence[tuple[Table, dict[str, Any], LoggedChange | None]]
) -> None:
    """`save_state` for many objects: one round trip per statement shape (asyncpg sends an
    `executemany`'s rows together)."""
    by_statement: dict[DriverStatement, list[dict[str, Any]]] = {}
    for table, values, logged in states:
        parameters = dict(values)
        if logged is not None:
            parameters |= _change_parameters(
                stripe_object_id=values["id"],
                event_id=logged.event_id,
                event_type=logged.event_type,
                change=logged.change,
                summary=logged.summary,
            )
            parameters["customer_id"] = logged.customer_id
        statement = _save_statement(table, tuple(sorted(values)), logged is not None)
        by_statement.setdefault(statement, []).append(parameters)
    for statement, rows in by_statement.items():
        await _execute_each(statement, connection, rows)


SET_FIRST_FAILED_AT = DriverStatement(
    update(INVOICES)
    .where(INVOICES.c.id == bindparam("stripe_id"))
    .values(first_failed_at=bindparam("first_failed_at"))
)


async def set_first_failed_at(
    connection: Driver, moves: Sequence[tuple[str, datetime | None]]
) -> None:
    """Move invoices' first failures on their own: (invoice id, first failure) pairs."""
    rows = [{"stripe_id": stripe_id, "first_failed_at": at} for stripe_id, at in moves]
    await _execute_each(SET_FIRST_FAILED_AT, connection, rows)


async def _execute_each(
    statement: DriverStatement, connection: Driver, rows: Sequence[dict[str, Any]]
) -> None:
    """The statement once per row, in one round trip; nothing for no rows."""
    if len(rows) == 1:
        await statement.execute(connection, rows[0])
    elif rows:
        await statement.executemany(connection, rows)


_ORGANIZATION_COLUMNS = (
    _organizations.c.id,
    _organizations.c.stripe_customer_id,
    _organizations.c.stripe_customer_event_created,
    _organizations.c.stripe_customer_deleted_at,
)
# Locked in id order, so two groups locking overlapping organizations cannot deadlock.
ORGANIZATIONS_FOR_UPDATE = DriverStatement(
    select(*_ORGANIZATION_COLUMNS)
    .where(
        or_(
            _organizations.c.id == any_(bindparam("organization_ids")),
            _organizations.c.stripe_customer_id == any_(bindparam("customer_ids")),
        )
    )
    .order_by(_organizations.c.id)
    .with_for_update()
)
_organization_id_by_customer = select(_organizations.c.id).where(
    _organizations.c.stripe_customer_id == bindparam("customer_id")
)
ORGANIZATION_ID_BY_CUSTOMER = DriverStatement(_organization_id_by_customer)


async def organizations_for_update(
    connection: Driver, organization_ids: Sequence[uuid.UUID], customer_ids: Sequence[str]
) -> list[StoredRow]:
    """The organizations with these ids or holding these Stripe customers, locked (in id
    order) until the transaction ends."""
    rows = await ORGANIZATIONS_FOR_UPDATE.fetch(
        connection,
        {"organization_ids": list(organization_ids), "customer_ids": list(customer_ids)},
    )
    return [StoredRow(row) for row in rows]


async def customer_holder(connection: Driver, customer_id: str) -> uuid.UUID | None:
    """The organization that holds the customer, in a driver unit of work."""
    found: uuid.UUID | None = await ORGANIZATION_ID_BY_CUSTOMER.fetchval(
        connection, {"customer_id": customer_id}
    )
    return found


async def organization_id_by_customer(session: AsyncSession, customer_id: str) -> uuid.UUID | None:
    """`customer_holder` for a caller with a session (`sensor-billing orgs show`)."""
    found: uuid.UUID | None = await session.scalar(
        _organization_id_by_customer, {"customer_id": customer_id}
    )
    return found


SET_ORGANIZATION_CUSTOMER = DriverStatement(
    update(_organizations)
    .where(_organizations.c.id == bindparam("organization_id"))
    .values(
        stripe_customer_id=bindparam("customer_id"),
        stripe_customer_deleted_at=bindparam("deleted_at"),
        stripe_customer_event_created=bindparam("event_created"),
        updated_at=func.now(),
    )
)


async def set_organization_customers(
    connection: Driver, links: Sequence[tuple[uuid.UUID, str, datetime | None, datetime]]
) -> None:
    """(organization, customer, customer deleted at, the linking event's time) for each."""
    rows = [
        {
            "organization_id": organization_id,
            "customer_id": customer_id,
            "deleted_at": deleted_at,
            "event_created": event_created,
        }
        for organization_id, customer_id, deleted_at, event_created in links
    ]
    await _execute_each(SET_ORGANIZATION_CUSTOMER, connection, rows)


SET_CUSTOMER_DELETED_AT = DriverStatement(
    update(_organizations)
    .where(_organizations.c.id == bindparam("organization_id"))
    .values(stripe_customer_deleted_at=bindparam("deleted_at"), updated_at=func.now())
)


async def set_customers_deleted_at(
    connection: Driver, deletions: Sequence[tuple[uuid.UUID, datetime]]
) -> None:
    """(organization, its customer's deletion time) for each."""
    rows = [
        {"organization_id": organization_id, "deleted_at": deleted_at}
        for organization_id, deleted_at in deletions
    ]
    await _execute_each(SET_CUSTOMER_DELETED_AT, connection, rows)


# The first `customer.deleted` of each customer (the oldest change row).
_first_deletions = (
    select(func.min(_changes.c.id))
    .where(
        _changes.c.stripe_object_id == any_(bindparam("customer_ids")),
        _changes.c.event_type == "customer.deleted",
    )
    .group_by(_changes.c.stripe_object_id)
)
CUSTOMERS_DELETED_AT = DriverStatement(
    select(
        _changes.c.stripe_object_id, _changes.c.change["stripe_customer_deleted_at"]["to"].astext
    ).where(_changes.c.id.in_(_first_deletions))
)


async def customers_deleted_at(
    connection: Driver, customer_ids: Sequence[str]
) -> dict[str, datetime]:
    """`customer_deleted_at` for many customers: those a `customer.deleted` named."""
    rows = await CUSTOMERS_DELETED_AT.fetch(connection, {"customer_ids": list(customer_ids)})
    return {row[0]: datetime.fromisoformat(row[1]) for row in rows if row[1]}


CUSTOMER_HOLDERS = DriverStatement(
    select(_organizations.c.stripe_customer_id, _organizations.c.id).where(
        _organizations.c.stripe_customer_id == any_(bindparam("customer_ids"))
    )
)


async def customer_holders(connection: Driver, customer_ids: Sequence[str]) -> dict[str, uuid.UUID]:
    """`customer_holder` for many customers: those an organization holds."""
    rows = await CUSTOMER_HOLDERS.fetch(connection, {"customer_ids": list(customer_ids)})
    return {row[0]: row[1] for row in rows}


_PRICE_COLUMNS = ("id", "currency", "unit_amount_decimal", "meter_id", "lookup_key")
RECORD_PRICE = DriverStatement(
    insert(_prices)
    .values({name: bindparam(name) for name in _PRICE_COLUMNS})
    .on_conflict_do_nothing(index_elements=[_prices.c.id])
)


async def record_prices(connection: Driver, prices: Sequence[PriceSnapshot]) -> None:
    """Keep prices not seen before; a known one is left as it is (Stripe never changes a
    price's amount, currency or meter). In id order: two deliveries that record the same
    prices take the unique index's locks in the same order and cannot deadlock."""
    if not prices:
        return
    in_order = sorted(prices, key=lambda price: price.id)
    rows = [{name: getattr(price, name) for name in _PRICE_COLUMNS} for price in in_order]
    await RECORD_PRICE.executemany(connection, rows)


@dataclass(frozen=True, slots=True)
class KnownPrice:
    """A row of `stripe_prices`."""

    id: str
    currency: str
    unit_amount_decimal: Decimal | None
    meter_id: str | None
    lookup_key: str | None


async def prices_by_id(session: AsyncSession, price_ids: Sequence[str]) -> dict[str, KnownPrice]:
    if not price_ids:
        return {}
    rows = await session.scalars(select(StripePrice).where(StripePrice.id.in_(price_ids)))
    return {
        row.id: KnownPrice(
            row.id, row.currency, row.unit_amount_decimal, row.meter_id, row.lookup_key
        )
        for row in rows
    }


def _record_change(organization_id: Any) -> Any:
    return insert(_changes).values(
        organization_id=organization_id,
        stripe_object_id=bindparam("stripe_object_id"),
        event_id=bindparam("event_id"),
        event_type=bindparam("event_type"),
        change=bindparam("change", type_=_changes.c.change.type),
        summary=bindparam("summary"),
    )


RECORD_CHANGE = DriverStatement(
    _record_change(bindparam("organization_id", type_=_changes.c.organization_id.type))
)
# The organization that holds the customer now, looked up in the same statement.
RECORD_CUSTOMER_CHANGE = _record_change(_organization_id_by_customer.scalar_subquery())


def _change_parameters(
    *, stripe_object_id: str, event_id: str, event_type: str, change: Any, summary: str
) -> dict[str, Any]:
    # The driver takes JSON as text (SQLAlchemy's codec on these connections).
    return {
        "stripe_object_id": stripe_object_id,
        "event_id": event_id,
        "event_type": event_type,
        "change": json.dumps(change),
        "summary": summary,
    }


async def record_changes(connection: Driver, changes: Sequence[dict[str, Any]]) -> None:
    """Change log rows, each with organization_id, stripe_object_id, event_id, event_type,
    change (a dict) and summary."""
    rows = [
        {
            **_change_parameters(
                stripe_object_id=change["stripe_object_id"],
                event_id=change["event_id"],
                event_type=change["event_type"],
                change=change["change"],
                summary=change["summary"],
            ),
            "organization_id": change["organization_id"],
        }
        for change in changes
    ]
    await _execute_each(RECORD_CHANGE, connection, rows)
