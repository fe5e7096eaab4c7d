"""Listing subscriptions, events and webhook endpoints through the SDK: the filters Stripe
documents, paging both ways, and a filter the stand-in does not model refused, not ignored."""

from __future__ import annotations

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import StandinState
from tests.devtools.helpers import BillingCatalog, Receiver, open_session, subscribe

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


async def complete_new_session(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> list[str]:
    """A session completed for a new customer; the ids of the three events it made."""
    session = await open_session(client, catalog)
    answer = await control.post(f"/checkout_sessions/{session.id}/complete", json={})
    events: list[str] = answer.json()["events"]
    return events


async def test_events_are_listed_by_a_type_with_a_wildcard(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    customer_created, _, subscription_created = await complete_new_session(client, catalog, control)

    subscription_events = await client.v1.events.list_async({"type": "customer.subscription.*"})
    customer_events = await client.v1.events.list_async({"type": "customer.*"})

    assert [e.id for e in subscription_events.data] == [subscription_created]
    assert [e.id for e in customer_events.data] == [subscription_created, customer_created]


async def test_events_are_listed_by_several_types(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    webhook_receiver: Receiver,
) -> None:
    customer_created, session_completed, _ = await complete_new_session(client, catalog, control)

    listed = await client.v1.events.list_async(
        {"types": ["customer.created", "checkout.session.completed"]}
    )

    assert [e.id for e in listed.data] == [session_completed, customer_created]


async def test_type_and_types_together_are_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.events.list_async({"type": "invoice.paid", "types": ["invoice.paid"]})

    assert refused.value.http_status == 400


async def test_events_are_listed_by_when_they_were_made(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    state: StandinState,
    webhook_receiver: Receiver,
) -> None:
    earlier = await complete_new_session(client, catalog, control)
    state.clock.advance(3600)
    boundary = int(state.clock.now())
    later = await complete_new_session(client, catalog, control)

    since = await client.v1.events.list_async({"created": {"gte": boundary}})
    before = await client.v1.events.list_async({"created": {"lt": boundary}})

    assert [e.id for e in since.data] == later[::-1]
    assert [e.id for e in before.data] == earlier[::-1]


async def test_ending_before_pages_back_towards_the_newest(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    oldest, middle, newest = [
        (await subscribe(client, catalog, control))["subscription"]["id"] for _ in range(3)
    ]

    page = await client.v1.subscriptions.list_async({"ending_before": oldest, "limit": 1})
    first = await client.v1.subscriptions.list_async({"ending_before": middle, "limit": 1})

    assert ([s.id for s in page.data], page.has_more) == ([middle], True)
    assert ([s.id for s in first.data], first.has_more) == ([newest], False)


async def test_subscriptions_are_listed_by_when_they_were_made(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    state: StandinState,
) -> None:
    earlier = (await subscribe(client, catalog, control))["subscription"]["id"]
    state.clock.advance(60)
    await subscribe(client, catalog, control)

    listed = await client.v1.subscriptions.list_async(
        {"created": {"lte": int(state.clock.now()) - 30}}
    )

    assert [s.id for s in listed.data] == [earlier]


async def test_a_filter_stripe_takes_but_the_stand_in_does_not_model_is_refused_naming_it(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    await subscribe(client, catalog, control)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.subscriptions.list_async({"price": catalog.metered_price})

    assert (refused.value.http_status, refused.value.param) == (400, "price")
    assert "stand-in" in str(refused.value.user_message)


async def test_a_parameter_no_stripe_list_takes_is_refused_as_unknown(
    raw: httpx.AsyncClient,
) -> None:
    for path in ("/v1/subscriptions", "/v1/events", "/v1/webhook_endpoints"):
        answer = await raw.get(path, params={"colour": "red"})

        assert answer.status_code == 400
        assert (answer.json()["error"]["code"], answer.json()["error"]["param"]) == (
            "parameter_unknown",
            "colour",
        )
