"""Checking a presented service key on every /v1 request, without a database round trip.

A key verified against PostgreSQL is remembered per process (by digest) for
`VERIFIED_KEY_CACHE_SECONDS`: the hot path hashes the secret and reads a dict. Revoking a key
therefore takes effect in every API process within that time. `last_used_at` is written at
most once per `LAST_USED_WRITE_INTERVAL_SECONDS` per key and process, by a task of its own:
never on the request's path, and a failed write only costs the column's freshness.

Keys that do not verify are looked up each time (and logged by the caller): only keys that
exist can fill the cache, so a stream of made-up keys cannot grow it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sensor_billing.db import SessionFactory, unit_of_work
from sensor_billing.service_keys import repository
from sensor_billing.service_keys.service import SERVICE_KEY_PREFIX, secret_digest

VERIFIED_KEY_CACHE_SECONDS: Final = 5.0
LAST_USED_WRITE_INTERVAL_SECONDS: Final = 60.0
# A real key is 47 characters; anything much longer is not one and is not hashed.
MAX_PRESENTED_LENGTH: Final = 128

logger = logging.getLogger("sensor_billing.service_keys")


@dataclass(frozen=True, slots=True)
class Caller:
    """The service key a request was made with."""

    key_id: uuid.UUID
    name: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a presented key does not open /v1: `reason` for the log, `message` for the caller
    (which never learns whether a well-formed key exists but was revoked)."""

    reason: str
    message: str


_NOT_A_KEY = Refusal(
    "not a service key", f"Authorization must be Bearer {SERVICE_KEY_PREFIX}... (a service key)"
)
_UNKNOWN = "the service key is unknown or revoked"


class ServiceKeyVerifier:
    def __init__(
        self,
        sessions: SessionFactory,
        *,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = VERIFIED_KEY_CACHE_SECONDS,
        last_used_interval: float = LAST_USED_WRITE_INTERVAL_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._last_used_interval = last_used_interval
        self._verified: dict[bytes, tuple[Caller, float]] = {}
        self._last_used_written: dict[uuid.UUID, float] = {}
        self._writes: set[asyncio.Task[None]] = set()

    async def identify(self, presented: str | None) -> Caller | Refusal:
        if presented is None:
            return Refusal("no bearer token", _NOT_A_KEY.message)
        if not presented.startswith(SERVICE_KEY_PREFIX) or len(presented) > MAX_PRESENTED_LENGTH:
            return _NOT_A_KEY
        digest = secret_digest(presented)
        now = self._clock()
        cached = self._verified.get(digest)
        if cached is not None and now < cached[1]:
            caller = cached[0]
        else:
            found = await self._look_up(digest)
            if isinstance(found, Refusal):
                self._verified.pop(digest, None)
                return found
            caller = found
            self._verified[digest] = (caller, now + self._cache_seconds)
        self._note_use(caller.key_id, now)
        return caller

    async def _look_up(self, digest: bytes) -> Caller | Refusal:
        async with self._sessions() as session:
            row = await repository.find_by_digest(session, digest)
        # The lookup goes by digest, so its timing tells nothing about a secret; the digests
        # are compared in constant time all the same.
        if row is None or not hmac.compare_digest(row.secret_sha256, digest):
            return Refusal("unknown key", _UNKNOWN)
        if row.revoked_at is not None:
            return Refusal(f"revoked key {row.id} ({row.name})", _UNKNOWN)
        return Caller(row.id, row.name)

    def _note_use(self, key_id: uuid.UUID, now: float) -> None:
        last = self._last_used_written.get(key_id)
        if last is not None and now - last < self._last_used_interval:
            return
        self._last_used_written[key_id] = now
        task = asyncio.get_running_loop().create_task(self._write_last_used(key_id))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_last_used(self, key_id: uuid.UUID) -> None:
        try:
            async with unit_of_work(self._sessions) as session:
                await repository.touch(session, key_id)
        except Exception as error:  # freshness of a column only; the request already passed
            logger.warning("could not record the use of service key %s: %s", key_id, error)

    async def aclose(self) -> None:
        """Wait for the `last_used_at` writes still running (at shutdown)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
