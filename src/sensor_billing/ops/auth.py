"""Who may see /ops: a person signed in with OPS_TOKEN (a signed session cookie), or a script
that sends the token as `Authorization: Bearer <token>`.

The cookie holds no secret: a CSRF token for the session's forms and a fingerprint of the
token it was issued for, signed (itsdangerous, HMAC-SHA256) and timestamped, so it cannot be
forged, outlives neither `SESSION_MAX_AGE_SECONDS` nor a change of OPS_TOKEN, and is never
readable by page scripts (HttpOnly). Bearer requests carry no ambient credential a third-party
page could make a browser send, so they need no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Final

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from sensor_billing.errors import OpsCsrfError, OpsNotSignedInError

SESSION_COOKIE: Final = "sb_ops_session"
# A working day: a person signs in again the next morning.
SESSION_MAX_AGE_SECONDS: Final = 12 * 3600
SESSION_SALT: Final = "sensor-billing.ops.session.v1"
# The cookie is only sent to the pages that read it.
COOKIE_PATH: Final = "/ops"

logger = logging.getLogger("sensor_billing.ops")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True, slots=True)
class Operator:
    """Whoever the request is from: a session (with its CSRF token) or a bearer script."""

    csrf_token: str | None  # None: a bearer script

    @property
    def is_script(self) -> bool:
        return self.csrf_token is None


class OpsAuth:
    def __init__(self, token: str, session_key: bytes) -> None:
        self._token_digest = _digest(token)
        self._serializer = URLSafeTimedSerializer(session_key, salt=SESSION_SALT)
        # Sessions name the token they were issued for: a new OPS_TOKEN ends them, even when
        # OPS_SESSION_SECRET stays the same.
        self._token_fingerprint = hmac.new(session_key, token.encode(), "sha256").hexdigest()[:32]

    def token_matches(self, candidate: str) -> bool:
        # Digests first: compare_digest is constant-time only for inputs of equal length.
        return hmac.compare_digest(_digest(candidate), self._token_digest)

    def new_session(self) -> str:
        """A signed cookie value for a person who just gave the right token."""
        payload = {"csrf": secrets.token_urlsafe(24), "tf": self._token_fingerprint}
        return self._serializer.dumps(payload)

    def session_csrf(self, cookie: str) -> str | None:
        """The CSRF token of a valid, unexpired session cookie; None otherwise."""
        try:
            payload = self._serializer.loads(cookie, max_age=SESSION_MAX_AGE_SECONDS)
        except BadSignature:  # also raised for an expired signature
            return None
        if not isinstance(payload, dict) or not hmac.compare_digest(
            str(payload.get("tf", "")), self._token_fingerprint
        ):
            return None
        csrf = payload.get("csrf")
        return csrf if isinstance(csrf, str) and csrf else None

    def operator(self, request: Request) -> Operator:
        """The request's operator, or `OpsNotSignedInError`."""
        authorization = request.headers.get("authorization")
        if authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
                return Operator(csrf_token=None)
            logger.warning(
                "ops request refused: wrong bearer token (client %s)",
                request.client.host if request.client else "-",
            )
            raise OpsNotSignedInError("the bearer token is not OPS_TOKEN")
        cookie = request.cookies.get(SESSION_COOKIE)
        csrf = self.session_csrf(cookie) if cookie else None
        if csrf is None:
            raise OpsNotSignedInError("sign in with OPS_TOKEN")
        return Operator(csrf_token=csrf)

    @staticmethod
    def check_csrf(operator: Operator, submitted: str | None) -> None:
        if operator.csrf_token is None:
            return
        # As bytes: compare_digest raises TypeError for a str with a non-ASCII character.
        if not submitted or not hmac.compare_digest(
            submitted.encode(), operator.csrf_token.encode()
        ):
            raise OpsCsrfError("the form is out of date or not from this site; reload the page")


def ops_auth(request: Request) -> OpsAuth:
    auth = request.app.state.ops_auth
    assert isinstance(auth, OpsAuth)
    return auth


def current_operator(request: Request) -> Operator:
    """FastAPI dependency: the signed-in operator, or 401."""
    return ops_auth(request).operator(request)


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a page under /ops on this site, nothing else."""
    if path and path.startswith("/ops") and not path.startswith("//") and "\\" not in path:
        return path
    return "/ops"
