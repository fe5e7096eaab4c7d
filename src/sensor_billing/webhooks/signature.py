"""Stripe webhook signatures, checked over the raw body.

Header `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]`; each v1 is
HMAC-SHA256 keyed with an endpoint secret over `"<t>.<raw body>"`. Only v1 counts. During a
secret roll Stripe sends one v1 per active secret: any match is enough. (docs: webhooks)

This is the same check as `stripe.WebhookSignature.verify_header`, done here so that every
active secret is tried in one pass and the body is never parsed into a StripeObject tree, which
costs ~25x the check itself (docs: DESIGN.md "Cost").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from sensor_billing.errors import (
    SignatureExpiredError,
    SignatureMalformedError,
    SignatureMismatchError,
    SignatureMissingError,
)

# Stripe's SDKs default to 300 s; a tolerance of 0 would disable replay protection.
DEFAULT_TOLERANCE_SECONDS = 300
# Unix seconds have 10 digits until the year 2286; a longer t= is no timestamp Stripe sends.
MAX_TIMESTAMP_DIGITS = 20


def parse_header(header: str) -> tuple[int, list[str]]:
    """The timestamp and the v1 signatures of a `Stripe-Signature` header."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            # isdigit() alone takes "²" (a header byte read as Latin-1), which int() refuses,
            # and int() refuses more than 4300 digits: either would answer 500, not 400.
            if not (value.isascii() and value.isdigit()) or len(value) > MAX_TIMESTAMP_DIGITS:
                raise SignatureMalformedError("Stripe-Signature timestamp t= is not a number")
            timestamp = int(value)
        elif key == "v1" and value:
            # A v1 is hex; hmac.compare_digest raises TypeError for a str with a non-ASCII
            # character (a header byte read as Latin-1), which would answer 500, not 400.
            if not value.isascii():
                raise SignatureMalformedError("Stripe-Signature v1= is not a hex digest")
            signatures.append(value)
    if timestamp is None:
        raise SignatureMalformedError("Stripe-Signature has no timestamp (t=)")
    if not signatures:
        raise SignatureMalformedError("Stripe-Signature has no v1 signature")
    return timestamp, signatures


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """A `Stripe-Signature` header value, as Stripe would send it (for tests and dev tools)."""
    return f"t={timestamp},v1={compute_signature(secret, timestamp, body)}"


def verify_signature(
    body: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Return the signed timestamp, or raise the `WebhookRejectedError` that says why not."""
    if not header:
        raise SignatureMissingError("Stripe-Signature header is missing")
    timestamp, signatures = parse_header(header)
    matched = False
    for secret in secrets:
        expected = compute_signature(secret, timestamp, body)
        # Compare with every candidate; compare_digest keeps each comparison constant-time.
        for candidate in signatures:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureMismatchError("no v1 signature matches an active webhook secret")
    if abs(now - timestamp) > tolerance:
        raise SignatureExpiredError(
            f"signature timestamp is more than {tolerance} s from the server's clock"
        )
    return timestamp
