"""Webhook endpoints through the SDK and the control API: secrets, event types, deletion."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.devtools.helpers import BillingCatalog, Receiver, open_session, receiving

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


async def test_an_endpoint_shows_its_signing_secret_only_when_created(
    client: stripe.StripeClient,
) -> None:
    created = await client.v1.webhook_endpoints.create_async(
        {"url": "https://app.example/webhooks/stripe", "enabled_events": ["*"]}
    )

    fetched = await client.v1.webhook_endpoints.retrieve_async(created.id)

    assert created.id.startswith("we_")
    assert str(created.secret).startswith("whsec_")
    assert "secret" not in fetched
    assert fetched.enabled_events == ["*"]


async def test_an_endpoint_created_through_the_api_receives_events_signed_with_its_secret(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    endpoint = await client.v1.webhook_endpoints.create_async(
        {"url": receiver.url, "enabled_events": ["checkout.session.completed"]}
    )
    session = await open_session(client, catalog)

    await control.post(f"/checkout_sessions/{session.id}/complete", json={})

    [(body, signature)] = receiver.deliveries
    assert endpoint.secret is not None
    event = stripe.Webhook.construct_event(body.decode(), signature, endpoint.secret)
    assert event.type == "checkout.session.completed"


async def test_an_endpoint_without_enabled_events_is_refused(raw: httpx.AsyncClient) -> None:
    answer = await raw.post("/v1/webhook_endpoints", data={"url": "https://app.example/hook"})

    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "enabled_events"


async def test_an_endpoint_that_is_not_an_http_url_is_refused(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.webhook_endpoints.create_async(
            {"url": "ftp://app.example/hook", "enabled_events": ["*"]}
        )

    assert refused.value.param == "url"


async def test_a_deleted_endpoint_receives_nothing_more(
    client: stripe.StripeClient,
    catalog: BillingCatalog,
    control: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    endpoint = await client.v1.webhook_endpoints.create_async(
        {"url": receiver.url, "enabled_events": ["*"]}
    )
    deleted = await client.v1.webhook_endpoints.delete_async(endpoint.id)
    session = await open_session(client, catalog)

    await control.post(f"/checkout_sessions/{session.id}/complete", json={})

    assert deleted.deleted is True
    assert receiver.deliveries == []
    assert (await client.v1.webhook_endpoints.list_async()).data == []


async def test_every_registered_endpoint_receives_the_events_it_takes(
    client: stripe.StripeClient, catalog: BillingCatalog, control: httpx.AsyncClient
) -> None:
    with receiving() as everything, receiving() as subscriptions_only:
        await control.post(
            "/webhook_endpoints", json={"url": everything.url, "secret": "whsec_all"}
        )
        await control.post(
            "/webhook_endpoints",
            json={
                "url": subscriptions_only.url,
                "secret": "whsec_subscriptions",
                "enabled_events": ["customer.subscription.created"],
            },
        )
        session = await open_session(client, catalog)

        await control.post(f"/checkout_sessions/{session.id}/complete", json={})

    assert [e["type"] for e in everything.events()] == [
        "customer.created",
        "checkout.session.completed",
        "customer.subscription.created",
    ]
    assert [e["type"] for e in subscriptions_only.events()] == ["customer.subscription.created"]


async def test_registering_an_endpoint_needs_a_whsec_secret(control: httpx.AsyncClient) -> None:
    answer = await control.post(
        "/webhook_endpoints", json={"url": "http://127.0.0.1:9/hook", "secret": "sk_test_x"}
    )

    assert answer.status_code == 400


async def test_an_endpoint_asking_for_events_in_a_version_the_stand_in_does_not_render_is_refused(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.webhook_endpoints.create_async(
            {
                "url": "https://app.example/hook",
                "enabled_events": ["*"],
                "api_version": "2020-08-27",
            }
        )
    rendered = await client.v1.webhook_endpoints.create_async(
        {
            "url": "https://app.example/hook",
            "enabled_events": ["*"],
            "api_version": "2025-03-31.basil",
        }
    )

    assert refused.value.param == "api_version"
    assert "2025-03-31.basil" in str(refused.value.user_message)
    assert rendered.api_version == "2025-03-31.basil"
