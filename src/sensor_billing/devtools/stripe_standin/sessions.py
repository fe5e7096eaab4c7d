"""v2 meter event sessions: short-lived tokens for the high-throughput stream."""

from __future__ import annotations

import secrets

from .records import MeterEventSession, new_id
from .state import StandinState

# "Authentication tokens are only valid for 15 minutes" (meter_event_session reference).
SESSION_LIFETIME_SECONDS = 15 * 60


def create_session(state: StandinState) -> MeterEventSession:
    with state.lock:
        now = state.clock.now()
        session = MeterEventSession(
            id=new_id("mes_test_"),
            authentication_token="mes_token_" + secrets.token_urlsafe(32),
            created=now,
            expires_at=now + SESSION_LIFETIME_SECONDS,
        )
        state.sessions_by_token[session.authentication_token] = session
        return session
