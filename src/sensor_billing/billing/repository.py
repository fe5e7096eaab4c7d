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

from sqlalchemy import Table, bindparam, func, select, update
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


async def _row(statement: DriverStatement, driver: Driver, **parameters: Any) -> StoredRow | None:
    record = await statement.fetchrow(driver, parameters)
    return None if record is None else StoredRow(record)


LOCK_STRIPE_OBJECT = DriverStatement(
    select(func.pg_advisory_xact_lock(func.hashtextextended(bindparam("stripe_id"), 0)))
)


async def lock_stripe_object(connection: Driver, stripe_id: str) -> None:
    """Serialise writers of one Stripe object until the transaction ends.

    Two different events about one object (say two subscription updates) can arrive at the same
    moment; without this, both could read the same watermark and the older one could win. The
    row is read by a later statement: one that waited here would still read the snapshot it
    started with, from before the other writer committed.
    """
    await LOCK_STRIPE_OBJECT.execute(connection, {"stripe_id": stripe_id})


def _by_id(table: Table) -> DriverStatement:
    return DriverStatement(select(table).where(table.c.id == bindparam("stripe_id")))


SUBSCRIPTION_BY_ID = _by_id(SUBSCRIPTIONS)
INVOICE_BY_ID = _by_id(INVOICES)


async def get_subscription(connection: Driver, stripe_id: str) -> StoredRow | None:
    return await _row(SUBSCRIPTION_BY_ID, connection, stripe_id=stripe_id)


async def get_invoice(connection: Driver, stripe_id: str) -> StoredRow | None:
    return await _row(INVOICE_BY_ID, connection, stripe_id=stripe_id)


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


async def save_state(
    connection: Driver, table: Table, values: dict[str, Any], logged: LoggedChange | None
) -> None:
    """Create or overwrite the mirrored Stripe object `values["id"]` with `values` and, when
    `logged` is given, add its row to the change log."""
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
    await statement.execute(connection, parameters)


SET_FIRST_FAILED_AT = DriverStatement(
    update(INVOICES)
    .where(INVOICES.c.id == bindparam("stripe_id"))
    .values(first_failed_at=bindparam("first_failed_at"))
    .returning(*INVOICES.c)
)


async def set_first_failed_at(
    connection: Driver, stripe_id: str, first_failed_at: datetime | None
) -> StoredRow | None:
    """Move an invoice's first failure on its own; the invoice as it is now."""
    return await _row(
        SET_FIRST_FAILED_AT, connection, stripe_id=stripe_id, first_failed_at=first_failed_at
    )


_ORGANIZATION_COLUMNS = (
    _organizations.c.id,
    _organizations.c.stripe_customer_id,
    _organizations.c.stripe_customer_event_created,
    _organizations.c.stripe_customer_deleted_at,
)
ORGANIZATION_FOR_UPDATE = DriverStatement(
    select(*_ORGANIZATION_COLUMNS)
    .where(_organizations.c.id == bindparam("organization_id"))
    .with_for_update()
)
ORGANIZATION_BY_CUSTOMER_FOR_UPDATE = DriverStatement(
    select(*_ORGANIZATION_COLUMNS)
    .where(_organizations.c.stripe_customer_id == bindparam("customer_id"))
    .with_for_update()
)
_organization_id_by_customer = select(_organizations.c.id).where(
    _organizations.c.stripe_customer_id == bindparam("customer_id")
)
ORGANIZATION_ID_BY_CUSTOMER = DriverStatement(_organization_id_by_customer)


async def organization_for_update(
    connection: Driver, organization_id: uuid.UUID
) -> StoredRow | None:
    return await _row(ORGANIZATION_FOR_UPDATE, connection, organization_id=organization_id)


async def organization_by_customer_for_update(
    connection: Driver, customer_id: str
) -> StoredRow | None:
    return await _row(ORGANIZATION_BY_CUSTOMER_FOR_UPDATE, connection, customer_id=customer_id)


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


async def set_organization_customer(
    connection: Driver,
    organization_id: uuid.UUID,
    *,
    customer_id: str,
    deleted_at: datetime | None,
    event_created: datetime,
) -> None:
    await SET_ORGANIZATION_CUSTOMER.execute(
        connection,
        {
            "organization_id": organization_id,
            "customer_id": customer_id,
            "deleted_at": deleted_at,
            "event_created": event_created,
        },
    )


SET_CUSTOMER_DELETED_AT = DriverStatement(
    update(_organizations)
    .where(_organizations.c.id == bindparam("organization_id"))
    .values(stripe_customer_deleted_at=bindparam("deleted_at"), updated_at=func.now())
)


async def set_customer_deleted_at(
    connection: Driver, organization_id: uuid.UUID, deleted_at: datetime
) -> None:
    await SET_CUSTOMER_DELETED_AT.execute(
        connection, {"organization_id": organization_id, "deleted_at": deleted_at}
    )


CUSTOMER_DELETED_AT = DriverStatement(
    select(_changes.c.change["stripe_customer_deleted_at"]["to"].astext)
    .where(
        _changes.c.stripe_object_id == bindparam("customer_id"),
        _changes.c.event_type == "customer.deleted",
    )
    .order_by(_changes.c.id)
    .limit(1)
)


async def customer_deleted_at(connection: Driver, customer_id: str) -> datetime | None:
    """When a `customer.deleted` event said Stripe deleted the customer, if one did."""
    deleted_at = await CUSTOMER_DELETED_AT.fetchval(connection, {"customer_id": customer_id})
    return datetime.fromisoformat(deleted_at) if deleted_at else None


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


async def record_change(
    connection: Driver,
    *,
    organization_id: uuid.UUID | None,
    stripe_object_id: str,
    event_id: str,
    event_type: str,
    change: dict[str, Any],
    summary: str,
) -> None:
    parameters = _change_parameters(
        stripe_object_id=stripe_object_id,
        event_id=event_id,
        event_type=event_type,
        change=change,
        summary=summary,
    )
    await RECORD_CHANGE.execute(connection, {**parameters, "organization_id": organization_id})
