"""Signature checks, byte for byte as Stripe signs (docs: webhooks; vector from STRIPE.md)."""

from __future__ import annotations

import pytest
import stripe

from sensor_billing.errors import (
    SignatureExpiredError,
    SignatureMalformedError,
    SignatureMismatchError,
    SignatureMissingError,
)
from sensor_billing.webhooks.signature import compute_signature, sign, verify_signature

VECTOR_SECRET = "whsec_test_secret"
VECTOR_BODY = b'{"id":"evt_1","object":"event","type":"invoice.paid"}'
VECTOR_TIME = 1_700_000_000
VECTOR_V1 = "dfb4777aaaec4ea29ff455dd4df7fe6b2ef71096ad3a93a158db7e100109ea91"


def test_signature_matches_the_known_stripe_vector() -> None:
    assert compute_signature(VECTOR_SECRET, VECTOR_TIME, VECTOR_BODY) == VECTOR_V1


def test_signature_agrees_with_the_stripe_sdk() -> None:
    header = stripe.WebhookSignature._compute_signature(
        f"{VECTOR_TIME}.{VECTOR_BODY.decode()}", VECTOR_SECRET
    )
    assert header == VECTOR_V1
    stripe.WebhookSignature.verify_header(
        VECTOR_BODY.decode(),
        sign(VECTOR_SECRET, VECTOR_TIME, VECTOR_BODY),
        VECTOR_SECRET,
        tolerance=None,
    )


def test_valid_signature_returns_its_timestamp() -> None:
    header = f"t={VECTOR_TIME},v1={VECTOR_V1}"
    assert (
        verify_signature(VECTOR_BODY, header, [VECTOR_SECRET], now=VECTOR_TIME + 10) == VECTOR_TIME
    )


def test_any_of_several_v1_signatures_may_match() -> None:
    header = f"t={VECTOR_TIME},v1={'0' * 64},v1={VECTOR_V1}"
    verify_signature(VECTOR_BODY, header, [VECTOR_SECRET], now=VECTOR_TIME)


def test_v0_signature_does_not_count() -> None:
    header = f"t={VECTOR_TIME},v0={VECTOR_V1}"
    with pytest.raises(SignatureMalformedError, match="no v1"):
        verify_signature(VECTOR_BODY, header, [VECTOR_SECRET], now=VECTOR_TIME)


def test_a_changed_body_byte_fails() -> None:
    header = f"t={VECTOR_TIME},v1={VECTOR_V1}"
    with pytest.raises(SignatureMismatchError):
        verify_signature(VECTOR_BODY + b" ", header, [VECTOR_SECRET], now=VECTOR_TIME)


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header_is_named(header: str | None) -> None:
    with pytest.raises(SignatureMissingError):
        verify_signature(VECTOR_BODY, header, [VECTOR_SECRET], now=VECTOR_TIME)


@pytest.mark.parametrize(
    "header", ["garbage", f"v1={VECTOR_V1}", f"t=soon,v1={VECTOR_V1}", f"t={VECTOR_TIME}"]
)
def test_malformed_header_is_named(header: str) -> None:
    with pytest.raises(SignatureMalformedError):
        verify_signature(VECTOR_BODY, header, [VECTOR_SECRET], now=VECTOR_TIME)


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_timestamp_outside_300_seconds_is_refused(offset: int) -> None:
    header = f"t={VECTOR_TIME},v1={VECTOR_V1}"
    with pytest.raises(SignatureExpiredError):
        verify_signature(VECTOR_BODY, header, [VECTOR_SECRET], now=VECTOR_TIME + offset)


def test_timestamp_at_the_tolerance_edge_is_accepted() -> None:
    header = f"t={VECTOR_TIME},v1={VECTOR_V1}"
    verify_signature(VECTOR_BODY, header, [VECTOR_SECRET], now=VECTOR_TIME + 300)
