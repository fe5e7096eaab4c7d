"""The bulk path: a large backlog of pending rows through the v2 meter event stream.

The stream takes up to 100 events per request and far more per second than one-event calls
(docs: STRIPE.md "Meter Event Streams"), which suits catching up after an outage. Rows keep
their identifiers, and Stripe drops a repeated identifier, so a batch resent after a crash
does not double-bill within Stripe's 24 h identifier window; rows older than that are left to
their jobs, which ask Stripe first (stale_resend.py). A row whose job is running is locked;
SKIP LOCKED leaves it to the job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import stripe

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.metering import repository
from sensor_billing.metering.stale_resend import STALE_AFTER
from sensor_billing.metering.windows import event_timestamp, oldest_sendable_timestamp
from sensor_billing.observability import timed_stripe_request
from sensor_billing.stripe_api.meter_events import map_stripe_error

STREAM_BATCH = 100  # Stripe's maximum events per stream request
# Batches in flight at once: one sender waits on PostgreSQL and Stripe in turn; four overlap.
STREAM_SENDERS = 4


def _rfc3339(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class MeterEventStream:
    """A v2 meter event session, renewed when Stripe says its token expired (15 minutes)."""

    def __init__(
        self, client: stripe.StripeClient, session_client: Callable[[str], stripe.StripeClient]
    ):
        self._client = client
        self._session_client = session_client
        self._stream_client: stripe.StripeClient | None = None

    async def _open(self) -> stripe.StripeClient:
        session = await self._client.v2.billing.meter_event_session.create_async()
        self._stream_client = self._session_client(session.authentication_token)
        return self._stream_client

    async def send(self, events: list[dict[str, object]]) -> None:
        client = self._stream_client or await self._open()
        try:
            await client.v2.billing.meter_event_stream.create_async({"events": events})  # type: ignore[typeddict-item]
        except stripe.TemporarySessionExpiredError:
            client = await self._open()
            await client.v2.billing.meter_event_stream.create_async({"events": events})  # type: ignore[typeddict-item]


async def stream_backlog(
    sessions: SessionFactory,
    stream: MeterEventStream,
    *,
    clock: Callable[[], datetime],
    limit: int,
    senders: int = STREAM_SENDERS,
    stopping: asyncio.Event | None = None,
) -> int:
    """Send up to `limit` pending window rows through the stream; return how many were sent.

    `senders` batches are in flight at once; SKIP LOCKED gives each its own rows. Raises
    `StripeUnavailableError`/`StripeRefusedError` when Stripe fails a batch: that batch stays
    pending (its jobs and the sweep take over), batches already sent stay sent. Once
    `stopping` is set (the worker is stopping), no new batch is taken. `clock` is read for
    each batch: a long run must not send a row whose timestamp passed Stripe's 35-day limit
    since it began (Stripe would answer `{}` and drop the event; the ledger would say sent).
    """
    # A failed batch stops every sender, and the stream returns once the batches in flight
    # are answered and recorded: the caller hands the rest to jobs and nobody waits for a
    # sender still streaming after that.
    failed = asyncio.Event()

    def halted() -> bool:
        return failed.is_set() or (stopping is not None and stopping.is_set())

    async def sender() -> int:
        try:
            return await _send_batches(sessions, stream, clock, limit // senders + 1, halted)
        except BaseException:
            failed.set()
            raise

    results = await asyncio.gather(*(sender() for _ in range(senders)), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return sum(result for result in results if isinstance(result, int))


async def _send_batches(
    sessions: SessionFactory,
    stream: MeterEventStream,
    clock: Callable[[], datetime],
    limit: int,
    halted: Callable[[], bool],
) -> int:
    sent = 0
    while sent < limit and not halted():
        async with unit_of_work(sessions) as session:
            # Checked now, just before the call: the limit's margin covers the call itself.
            # A row left out stays pending; its job fails it for a person (reporter).
            now = clock()
            rows = await repository.lock_stream_batch(
                session,
                min(STREAM_BATCH, limit - sent),
                oldest_sendable_timestamp(now),
                stale_before=now - STALE_AFTER,
            )
            if not rows:
                return sent
            events: list[dict[str, object]] = [
                {
                    "event_name": row.event_name,
                    "identifier": row.identifier,
                    "timestamp": _rfc3339(event_timestamp(row.window_end)),
                    "payload": {
                        "stripe_customer_id": row.stripe_customer_id,
                        "value": str(row.value),
                    },
                }
                for row in rows
            ]
            # Timed and counted like every other meter event call (/metrics).
            with timed_stripe_request():
                try:
                    await stream.send(events)
                except stripe.StripeError as error:
                    raise map_stripe_error(error) from error
            await repository.mark_sent(session, [row.id for row in rows], clock())
            sent += len(rows)
    return sent
