"""A Redis client that sends the commands of concurrent callers together, in one pipeline.

bullmq's worker makes two Redis calls per job (move to active, move to completed), each a
round trip of its own on one connection. The meter worker's jobs finish together, their
outcomes committed by one statement (`metering/send_ledger.py`), and their next jobs start
together: their calls, given to this client in one pass of the event loop, go to Redis in one
write and come back in one read. Redis runs them one by one in the order given, as it would
have run them one after the other; a caller still sees only its own reply or error. This is
what ioredis's `enableAutoPipelining` does for bullmq in Node.

Blocking commands (bullmq's wait for the next job) go out on a connection of their own, as
the plain client sends them. Commands queued while a pipeline is in flight go in the next.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

# Commands that wait server-side: one in a pipeline would hold up every command behind it.
BLOCKING_COMMANDS = frozenset(
    {
        "BLMOVE",
        "BLMPOP",
        "BLPOP",
        "BRPOP",
        "BRPOPLPUSH",
        "BZMPOP",
        "BZPOPMAX",
        "BZPOPMIN",
        "WAIT",
        "WAITAOF",
        "XREAD",
        "XREADGROUP",
    }
)

_Queued = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]


class PipeliningRedis(Redis):
    """`redis.asyncio.Redis`, with concurrent non-blocking commands pipelined together."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queued: list[_Queued] = []
        self._sender: asyncio.Task[None] | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper() in BLOCKING_COMMANDS:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        self._queued.append((args, options, reply))
        if self._sender is None or self._sender.done():
            # Started after the callers of this pass of the loop have queued theirs.
            self._sender = loop.create_task(self._send_queued())
        return await reply

    async def _send_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                async with self.pipeline(transaction=False) as pipe:
                    for args, options, _ in batch:
                        pipe.execute_command(*args, **options)
                    replies = await pipe.execute(raise_on_error=False)
            except Exception as error:  # the connection failed: every caller sees it
                for _, _, reply in batch:
                    if not reply.done():
                        reply.set_exception(error)
                continue
            for (_, _, reply), result in zip(batch, replies, strict=True):
                if reply.done():  # its caller was cancelled
                    continue
                if isinstance(result, Exception):
                    reply.set_exception(result)
                else:
                    reply.set_result(result)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        queued, self._queued = self._queued, []
        for _, _, reply in queued:
            if not reply.done():
                reply.set_exception(ConnectionError("the Redis client was closed"))
        await super().aclose(close_connection_pool)


def bullmq_worker_connection(redis_url: str) -> PipeliningRedis:
    """A client for a bullmq `Worker` (its `connection` option), set up as bullmq sets up its
    own: replies decoded, and connection errors retried the same way."""
    client = PipeliningRedis.from_url(
        redis_url,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=20, base=1), 20),
        retry_on_error=[BusyLoadingError, ConnectionError, TimeoutError],
    )
    assert isinstance(client, PipeliningRedis)  # from_url builds the class it is called on
    return client


__all__ = ["BLOCKING_COMMANDS", "PipeliningRedis", "bullmq_worker_connection"]
