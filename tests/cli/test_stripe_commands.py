"""`sensor-billing stripe setup`: price options that are not amounts are refused before Stripe."""

from __future__ import annotations

import pytest

from tests.cli.conftest import run_cli

# Stripe is never reached: the options are refused first, so no stand-in is needed, and
# STRIPE_API_BASE points nowhere to make sure of it.
UNREACHABLE_STRIPE = "http://127.0.0.1:1"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--reading-price", "nan"),
        ("--reading-price", "1e400"),
        ("--sensor-price", "inf"),
        ("--sensor-price", "-Infinity"),
        ("--sensor-price", "99999999999999999999"),
    ],
)
def test_a_price_that_is_not_an_amount_is_refused_in_one_line(
    option: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_unused")
    monkeypatch.setenv("STRIPE_API_BASE", UNREACHABLE_STRIPE)

    outcome = run_cli("stripe", "setup", option, value)

    assert outcome.exit_code == 2, outcome.stderr
    assert outcome.stderr.startswith(f"error: {option}"), outcome.stderr
    assert len(outcome.stderr.strip().splitlines()) == 1
