"""One stand-in for the whole run (fast), emptied before each test; clients per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import RunningStandin, StandinState, run_in_thread
from tests.devtools.helpers import (
    API_KEY,
    CLIENT_TIMEOUT_SECONDS,
    EVENT_NAME,
    WEBHOOK_SECRET,
    BillingCatalog,
    CustomerFactory,
    MeterFactory,
    Receiver,
    StreamClientFactory,
    create_billing_catalog,
    receiving,
)


@pytest.fixture(scope="session")
def running_standin() -> Iterator[RunningStandin]:
    with run_in_thread(api_keys=[API_KEY]) as standin:
        yield standin


@pytest.fixture
def standin(running_standin: RunningStandin) -> RunningStandin:
    running_standin.state.reset()
    return running_standin


@pytest.fixture
def state(standin: RunningStandin) -> StandinState:
    return standin.state


def stripe_client(
    standin: RunningStandin, key: str, http: stripe.HTTPXClient
) -> stripe.StripeClient:
    # Exactly how production builds its client; retries stay off (STRIPE.md: the job queue
    # owns retries), so every test sees the first answer.
    return stripe.StripeClient(
        key,
        http_client=http,
        base_addresses={"api": standin.url, "meter_events": standin.url},
    )


@pytest.fixture
async def http_clients() -> AsyncIterator[list[stripe.HTTPXClient]]:
    clients: list[stripe.HTTPXClient] = []
    yield clients
    for client in clients:
        await client.close_async()  # type: ignore[no-untyped-call]  # unannotated in the SDK


@pytest.fixture
def client_for(
    standin: RunningStandin, http_clients: list[stripe.HTTPXClient]
) -> Callable[[str], stripe.StripeClient]:
    def build(key: str) -> stripe.StripeClient:
        http = stripe.HTTPXClient(timeout=CLIENT_TIMEOUT_SECONDS)
        http_clients.append(http)
        return stripe_client(standin, key, http)

    return build


@pytest.fixture
def client(client_for: Callable[[str], stripe.StripeClient]) -> stripe.StripeClient:
    return client_for(API_KEY)


@pytest.fixture
async def raw(standin: RunningStandin) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP, for requests the SDK's types would not let a test build."""
    async with httpx.AsyncClient(
        base_url=standin.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5.0
    ) as http:
        yield http


@pytest.fixture
def create_meter(client: stripe.StripeClient) -> MeterFactory:
    async def create(event_name: str = EVENT_NAME, formula: str = "sum") -> stripe.billing.Meter:
        return await client.v1.billing.meters.create_async(
            {
                "display_name": event_name,
                "event_name": event_name,
                "default_aggregation": {"formula": formula},
                "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
                "value_settings": {"event_payload_key": "value"},
            }
        )

    return create


@pytest.fixture
def create_customer(client: stripe.StripeClient) -> CustomerFactory:
    async def create() -> str:
        customer = await client.v1.customers.create_async({"name": "Cold Chain Ltd"})
        return customer.id

    return create


@pytest.fixture
def stream_client(
    client: stripe.StripeClient, client_for: Callable[[str], stripe.StripeClient]
) -> StreamClientFactory:
    async def build() -> stripe.StripeClient:
        session = await client.v2.billing.meter_event_session.create_async()
        return client_for(session.authentication_token)

    return build


@pytest.fixture
def standin_url(standin: RunningStandin) -> str:
    return standin.url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as received:
        yield received


@pytest.fixture
async def control(standin_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The control API under /_standin/."""
    async with httpx.AsyncClient(base_url=f"{standin_url}/_standin", timeout=10) as http:
        yield http


@pytest.fixture
async def catalog(client: stripe.StripeClient) -> BillingCatalog:
    return await create_billing_catalog(client)


@pytest.fixture
async def webhook_receiver(control: httpx.AsyncClient, receiver: Receiver) -> Receiver:
    """A receiver registered as a webhook endpoint for every event type, with WEBHOOK_SECRET."""
    answer = await control.post(
        "/webhook_endpoints", json={"url": receiver.url, "secret": WEBHOOK_SECRET}
    )
    assert answer.status_code == 200, answer.text
    return receiver
