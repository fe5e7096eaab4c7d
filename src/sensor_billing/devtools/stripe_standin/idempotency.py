"""Stripe's idempotency layer: one saved answer per Idempotency-Key.

docs: api/idempotent_requests. A replay with the same key and the same parameters returns the
saved answer (500s included); the same key with other parameters is an `idempotency_error`;
a request arriving while another with the same key is still executing is a 409 conflict.
Keys are kept at least 24 h (v2: 30 days); the stand-in forgets them exactly then.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .clock import StandinClock
from .errors import IdempotencyConflictError, WireAnswer

V1_KEY_LIFETIME_SECONDS = 24 * 3600
V2_KEY_LIFETIME_SECONDS = 30 * 24 * 3600
MAX_KEY_LENGTH = 255


@dataclass
class _Entry:
    fingerprint: str
    started_at: float
    lifetime: float
    answer: WireAnswer | None = None


class IdempotencyStore:
    def __init__(self, clock: StandinClock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def begin(self, key: str, fingerprint: str, lifetime: float) -> WireAnswer | None:
        """The saved answer to replay, or None after reserving the key for this request."""
        now = self._clock.now()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now >= entry.started_at + entry.lifetime:
                entry = None
            if entry is None:
                self._entries[key] = _Entry(fingerprint, now, lifetime)
                return None
            if entry.fingerprint != fingerprint:
                raise IdempotencyConflictError(
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request."
                )
            if entry.answer is None:
                raise IdempotencyConflictError(
                    "There is currently another in-progress request using this Idempotent "
                    "Key (that probably means you submitted twice, and the other request is "
                    "still going through): "
                    f"{key}. Please try again later.",
                    status=409,
                )
            return entry.answer

    def save(self, key: str, answer: WireAnswer) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.answer = answer

    def release(self, key: str) -> None:
        """Forget a key whose request never began executing, so a retry runs afresh."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.answer is None:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
