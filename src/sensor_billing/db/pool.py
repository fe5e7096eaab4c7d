"""The connection pool: SQLAlchemy's asyncio QueuePool, except that a failed connect keeps its
place in the pool.

SQLAlchemy's QueuePool (checked in 2.1.9, `pool/impl.py` `QueuePool._do_get`) opens a new
connection only for a checkout that finds the pool below its size; every other checkout
waits on the pool's queue, and only a connection put back into the queue wakes one. When
opening the new connection fails, the pool gives the place up (`_dec_overflow`) without
putting anything back, so nobody waiting is woken. If every connection being opened fails
(PostgreSQL restarting, failing over, or ending the connections with
`pg_terminate_backend` while they start), the pool holds no connection and opens none, and
all the waiting requests sleep until `pool_timeout` (seen in the webhook storm with kills:
about 200 requests waiting, "0 in the pool, 0 checked out, overflow -20").

A connection that dies after it was opened does not have this problem: its entry goes back
into the queue without a connection and the next checkout reconnects it. This pool makes a
new place the same kind of entry, with no connection yet, and lets the checkout connect it
(`_ConnectionRecord.get_connection`), so a failed connect puts the entry back in the queue and
the next waiting request tries again at once: it connects, or fails fast with the database's
own error, instead of waiting for the timeout.
"""

from __future__ import annotations

from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.pool.base import _ConnectionRecord


class ReconnectingQueuePool(AsyncAdaptedQueuePool):
    """An asyncio QueuePool whose failed connects hand their place to the next waiting request."""

    def _create_connection(self) -> ConnectionPoolEntry:
        # Connected by the checkout that takes it; when that connect fails, SQLAlchemy puts the
        # entry back into the queue (`_checkin_failed`), which wakes the next waiting checkout.
        return _ConnectionRecord(self, connect=False)
