"""The entitlement policy, status by status (the table in billing/entitlement.py and
docs/billing.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sensor_billing.billing.entitlement import SubscriptionStanding, entitlement

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
GRACE = timedelta(days=7)
PERIOD_END = NOW + timedelta(days=20)


def standing(status: str, **fields: object) -> SubscriptionStanding:
    return SubscriptionStanding(
        status=status,
        current_period_end=fields.get("current_period_end", PERIOD_END),  # type: ignore[arg-type]
        cancel_at_period_end=bool(fields.get("cancel_at_period_end", False)),
        past_due_since=fields.get("past_due_since"),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("status", ["active", "trialing"])
def test_active_and_trialing_subscriptions_entitle_without_an_end(status: str) -> None:
    result = entitlement(standing(status), now=NOW, grace=GRACE)
    assert (result.entitled, result.reason, result.until) == (True, status, None)


def test_a_subscription_set_to_cancel_entitles_until_its_period_ends() -> None:
    result = entitlement(standing("active", cancel_at_period_end=True), now=NOW, grace=GRACE)
    assert (result.entitled, result.until) == (True, PERIOD_END)


def test_past_due_entitles_until_the_grace_period_after_the_first_failed_payment() -> None:
    failed = NOW - timedelta(days=6, hours=23)
    result = entitlement(standing("past_due", past_due_since=failed), now=NOW, grace=GRACE)
    assert (result.entitled, result.reason) == (True, "past_due_grace")
    assert result.until == failed + GRACE


def test_past_due_is_not_entitled_once_the_grace_period_is_over() -> None:
    failed = NOW - GRACE
    result = entitlement(standing("past_due", past_due_since=failed), now=NOW, grace=GRACE)
    assert (result.entitled, result.reason, result.until) == (False, "past_due_grace_ended", None)


def test_a_grace_period_of_zero_ends_entitlement_at_the_first_failure() -> None:
    result = entitlement(standing("past_due", past_due_since=NOW), now=NOW, grace=timedelta(0))
    assert result.entitled is False


@pytest.mark.parametrize(
    "status", ["unpaid", "canceled", "incomplete", "incomplete_expired", "paused"]
)
def test_other_statuses_are_not_entitled_and_say_their_status(status: str) -> None:
    result = entitlement(standing(status), now=NOW, grace=GRACE)
    assert (result.entitled, result.reason, result.until) == (False, status, None)


def test_a_status_stripe_adds_later_grants_nothing() -> None:
    result = entitlement(standing("some_future_status"), now=NOW, grace=GRACE)
    assert (result.entitled, result.reason) == (False, "some_future_status")


def test_no_subscription_is_not_entitled() -> None:
    result = entitlement(None, now=NOW, grace=GRACE)
    assert (result.entitled, result.reason) == (False, "no_subscription")


def test_a_deleted_customer_is_not_entitled_whatever_its_subscription_said() -> None:
    result = entitlement(standing("active"), now=NOW, grace=GRACE, customer_deleted=True)
    assert (result.entitled, result.reason) == (False, "customer_deleted")
