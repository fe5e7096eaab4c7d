"""The time the API decides by, as one seam: `app.state.clock` holds a `Clock`, so a test can
move it (a grace period ending, say) instead of waiting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
