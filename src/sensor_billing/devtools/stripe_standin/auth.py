"""Who may call: secret API keys on the API, session tokens on the v2 meter event stream."""

from __future__ import annotations

import base64
import binascii

from starlette.datastructures import Headers

from .errors import AuthenticationRefusedError, SessionExpiredError
from .records import MeterEventSession
from .state import StandinState

_NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
)


def presented_credential(headers: Headers) -> str | None:
    """The key from `Bearer <key>`, or from Basic auth with the key as user (`curl -u sk_..:`)."""
    authorization = headers.get("authorization", "").strip()
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer" and credential:
        return credential
    if scheme.lower() == "basic" and credential:
        try:
            user, _, _ = base64.b64decode(credential, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user or None
    return None


def _masked(key: str) -> str:
    return f"{key[:8]}{'*' * max(len(key) - 12, 4)}{key[-4:]}"


def require_secret_key(state: StandinState, headers: Headers) -> str:
    key = presented_credential(headers)
    if key is None:
        raise AuthenticationRefusedError(_NO_KEY)
    if key not in state.api_keys:
        raise AuthenticationRefusedError(f"Invalid API Key provided: {_masked(key)}")
    return key


def require_stream_session(state: StandinState, headers: Headers) -> MeterEventSession:
    """The stream takes only a meter event session token (15 min), never the secret key."""
    token = presented_credential(headers)
    if token is None:
        raise AuthenticationRefusedError(_NO_KEY)
    with state.lock:
        session = state.sessions_by_token.get(token)
        now = state.clock.now()
    if session is None:
        raise AuthenticationRefusedError(
            "Invalid authentication token provided. Create a meter event session with "
            "POST /v2/billing/meter_event_session and use its authentication_token."
        )
    if now >= session.expires_at:
        raise SessionExpiredError(
            "The meter event session has expired. Create a new session.",
            code="billing_meter_event_session_expired",
        )
    return session
