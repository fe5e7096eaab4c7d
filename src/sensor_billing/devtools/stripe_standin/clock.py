"""The stand-in's clock: real time plus an offset that tests can advance.

Stripe's rules are windows in time (identifiers unique for 24 h, session tokens valid for
15 minutes, timestamps accepted from 35 days back); advancing this clock lets a test cross
them without waiting. Freezing it stops it where it is (advancing still moves it), so that
several changes happen within one second, as Stripe's one-second `created` can show them;
unfrozen, it goes on from there.
"""

from __future__ import annotations

import threading
import time


class StandinClock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0
        self._frozen_at: float | None = None

    def now(self) -> float:
        """Unix seconds as the stand-in sees them."""
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return time.time() + self._offset

    @property
    def frozen(self) -> bool:
        with self._lock:
            return self._frozen_at is not None

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the stand-in clock only moves forward")
        with self._lock:
            self._offset += seconds
            if self._frozen_at is not None:
                self._frozen_at += seconds

    def freeze(self) -> None:
        with self._lock:
            if self._frozen_at is None:
                self._frozen_at = time.time() + self._offset

    def unfreeze(self) -> None:
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - time.time()
                self._frozen_at = None

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
            self._frozen_at = None
