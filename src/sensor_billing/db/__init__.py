"""Database access: the async engine, the unit of work and the schema."""

from sensor_billing.db.engine import create_engine, create_session_factory
from sensor_billing.db.session import SessionFactory, driver_connection, unit_of_work

__all__ = [
    "SessionFactory",
    "create_engine",
    "create_session_factory",
    "driver_connection",
    "unit_of_work",
]
