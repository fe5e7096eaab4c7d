"""Injected faults: what the SDK raises, and whether the event was recorded behind it."""

from __future__ import annotations

import pydantic
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import (
    FaultInjector,
    FaultKind,
    FaultPlan,
    FaultTarget,
    StandinState,
)
from tests.devtools.helpers import StreamClientFactory, send_event, stream_event

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the request body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


async def test_injected_rate_limit_raises_rate_limit_error_and_records_nothing(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.set_faults(FaultPlan(rate_limited=1.0))

    with pytest.raises(stripe.RateLimitError):
        await send_event(client)

    assert state.accepted_events() == []
    assert state.counters_snapshot().faults_injected == {"rate_limited": 1}


async def test_injected_server_error_raises_api_error_and_records_nothing(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.set_faults(FaultPlan(server_error=1.0))

    with pytest.raises(stripe.APIError) as failed:
        await send_event(client)

    assert failed.value.http_status == 500
    assert state.accepted_events() == []


async def test_server_error_after_recording_leaves_the_event_recorded(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.set_faults(FaultPlan(server_error=1.0, recorded_before_server_error=True))

    with pytest.raises(stripe.APIError):
        await send_event(client, identifier="lost-ack-1")

    assert state.identifier_accept_counts() == {"lost-ack-1": 1}


async def test_a_500_after_recording_is_saved_under_its_key_and_replayed(
    client: stripe.StripeClient, state: StandinState
) -> None:
    """Stripe saves the first answer under the key, 500s included: retrying with the same key
    gets the same 500 (for the key's 24 h), although the event was recorded."""
    state.set_faults(FaultPlan(server_error=1.0, recorded_before_server_error=True))
    with pytest.raises(stripe.APIError):
        await send_event(client, idempotency_key="retry-1", identifier="lost-ack-2")
    state.set_faults(FaultPlan())

    with pytest.raises(stripe.APIError) as replayed:
        await send_event(client, idempotency_key="retry-1", identifier="lost-ack-2")

    assert replayed.value.http_status == 500
    assert (replayed.value.headers or {}).get("Idempotent-Replayed") == "true"
    assert state.identifier_accept_counts() == {"lost-ack-2": 1}


async def test_retry_after_lost_acknowledgement_with_new_key_is_a_duplicate(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.set_faults(FaultPlan(server_error=1.0, recorded_before_server_error=True))
    with pytest.raises(stripe.APIError):
        await send_event(client, identifier="lost-ack-3")
    state.set_faults(FaultPlan())

    with pytest.raises(stripe.InvalidRequestError, match="already exists"):
        await send_event(client, identifier="lost-ack-3")


async def test_retry_after_server_error_before_recording_records_once(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.set_faults(FaultPlan(server_error=1.0))
    with pytest.raises(stripe.APIError):
        await send_event(client, idempotency_key="retry-2", identifier="not-recorded")
    state.set_faults(FaultPlan())

    await send_event(client, idempotency_key="retry-2", identifier="not-recorded")

    assert state.identifier_accept_counts() == {"not-recorded": 1}


async def test_dropped_connection_raises_api_connection_error_and_records_nothing(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.set_faults(FaultPlan(dropped_connection=1.0))

    with pytest.raises(stripe.APIConnectionError):
        await send_event(client)

    assert state.accepted_events() == []


async def test_dropped_connection_after_recording_leaves_the_event_recorded(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.set_faults(FaultPlan(dropped_connection=1.0, recorded_before_dropped_connection=True))

    with pytest.raises(stripe.APIConnectionError):
        await send_event(client, identifier="dropped-1")

    assert state.identifier_accept_counts() == {"dropped-1": 1}


async def test_timeout_raises_api_connection_error_and_records_nothing(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.set_faults(FaultPlan(timeout=1.0, timeout_seconds=3.0))

    with pytest.raises(stripe.APIConnectionError):
        await send_event(client)

    assert state.accepted_events() == []


async def test_timeout_after_recording_leaves_the_event_recorded(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.set_faults(FaultPlan(timeout=1.0, timeout_seconds=3.0, recorded_before_timeout=True))

    with pytest.raises(stripe.APIConnectionError):
        await send_event(client, identifier="slow-1")

    assert state.identifier_accept_counts() == {"slow-1": 1}


async def test_stream_faults_apply_to_the_v2_stream(
    stream_client: StreamClientFactory, state: StandinState
) -> None:
    stream = await stream_client()
    state.set_faults(FaultPlan(server_error=1.0))

    with pytest.raises(stripe.APIError):
        await stream.v2.billing.meter_event_stream.create_async({"events": [stream_event()]})

    assert state.accepted_events() == []


async def test_faults_spare_the_rest_of_the_api(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.set_faults(FaultPlan(dropped_connection=1.0))

    customer = await client.v1.customers.create_async({"name": "Unaffected"})

    assert customer.id.startswith("cus_")


async def test_partial_rates_inject_some_faults_and_let_the_rest_through(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.set_faults(FaultPlan(rate_limited=0.5, seed=7))

    outcomes = []
    for _ in range(20):
        try:
            await send_event(client)
            outcomes.append("ok")
        except stripe.RateLimitError:
            outcomes.append("429")

    assert 0 < outcomes.count("429") < 20
    assert outcomes.count("ok") == len(state.accepted_events())


def test_the_same_seed_injects_the_same_faults() -> None:
    plan = FaultPlan(
        rate_limited=0.2,
        server_error=0.2,
        timeout=0.2,
        dropped_connection=0.2,
        invalid_request=0.1,
        seed=3,
    )
    first, second = FaultInjector(plan), FaultInjector(plan)

    draws = [first.draw(FaultTarget.METERING) for _ in range(50)]

    assert draws == [second.draw(FaultTarget.METERING) for _ in range(50)]
    assert {d.kind for d in draws if d is not None} == set(FaultKind)


def test_fault_rates_adding_up_to_more_than_one_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError):
        FaultPlan(server_error=0.6, timeout=0.6)
