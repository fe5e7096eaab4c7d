"""`cancellation_details` on a subscription update and cancel (api/subscriptions/update,
api/subscriptions/cancel), whose parameters the SDK sends in the query string for a DELETE."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from tests.devtools.helpers import BillingCatalog, subscribe

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


@pytest.fixture
async def subscription(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> dict[str, Any]:
    started: dict[str, Any] = (await subscribe(client, catalog, control))["subscription"]
    return started


async def test_cancellation_details_given_on_update_are_kept(
    client: stripe.StripeClient, subscription: dict[str, Any]
) -> None:
    updated = await client.v1.subscriptions.update_async(
        subscription["id"],
        {
            "cancel_at_period_end": True,
            "cancellation_details": {"comment": "moving to paper logs", "feedback": "unused"},
        },
    )

    assert updated.cancellation_details is not None
    assert (updated.cancellation_details.comment, updated.cancellation_details.feedback) == (
        "moving to paper logs",
        "unused",
    )


async def test_cancellation_details_given_on_cancel_are_kept_with_the_reason(
    client: stripe.StripeClient, subscription: dict[str, Any]
) -> None:
    canceled = await client.v1.subscriptions.cancel_async(
        subscription["id"], {"cancellation_details": {"feedback": "too_expensive"}}
    )

    assert canceled.cancellation_details is not None
    assert (canceled.cancellation_details.reason, canceled.cancellation_details.feedback) == (
        "cancellation_requested",
        "too_expensive",
    )


async def test_a_feedback_stripe_does_not_list_is_refused(
    client: stripe.StripeClient, subscription: dict[str, Any]
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.subscriptions.update_async(
            subscription["id"], {"cancellation_details": {"feedback": "bored"}}
        )

    assert refused.value.param == "cancellation_details[feedback]"
