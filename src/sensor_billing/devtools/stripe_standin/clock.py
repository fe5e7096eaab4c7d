"""The stand-in's clock: real time plus an offset that tests can advance.

Stripe's rules are windows in time (identifiers unique for 24 h, session tokens valid for
15 minutes, timestamps accepted from 35 days back); advancing this clock lets a test cross
them without waiting.
"""

from __future__ import annotations

import threading
import time


class StandinClock:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    def now(self) -> float:
        """Unix seconds as the stand-in sees them."""
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the stand-in clock only moves forward")
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
