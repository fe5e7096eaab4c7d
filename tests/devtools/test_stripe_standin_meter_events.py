"""`POST /v1/billing/meter_events` and adjustments, through the official SDK where it can go."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import FaultPlan, StandinConfig, StandinState
from tests.devtools.helpers import (
    DAY,
    EVENT_NAME,
    MeterFactory,
    event_params,
    header_of,
    send_event,
    unique,
)

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


async def test_accepted_event_is_answered_as_a_billing_meter_event(
    client: stripe.StripeClient, state: StandinState
) -> None:
    event = await send_event(client, customer="cus_1", value="25", identifier="reading-1")

    assert (event.object, event.identifier, event.event_name) == (
        "billing.meter_event",
        "reading-1",
        EVENT_NAME,
    )
    assert event.to_dict()["payload"] == {"stripe_customer_id": "cus_1", "value": "25"}
    assert [(e.identifier, e.customer, e.value, e.via) for e in state.accepted_events()] == [
        ("reading-1", "cus_1", "25", "v1")
    ]


async def test_state_records_the_idempotency_key_the_event_came_with(
    client: stripe.StripeClient, state: StandinState
) -> None:
    await send_event(client, idempotency_key="key-abc")

    assert [e.idempotency_key for e in state.accepted_events()] == ["key-abc"]


async def test_identifier_is_generated_when_absent(client: stripe.StripeClient) -> None:
    event = await send_event(client)

    assert event.identifier


async def test_timestamp_defaults_to_now(client: stripe.StripeClient) -> None:
    event = await send_event(client)

    assert abs(event.timestamp - time.time()) < 5


async def test_request_without_api_key_is_refused_with_401(standin_url: str) -> None:
    async with httpx.AsyncClient(base_url=standin_url) as http:
        answer = await http.post("/v1/billing/meter_events", data={"event_name": EVENT_NAME})

    assert answer.status_code == 401
    assert "did not provide an API key" in answer.json()["error"]["message"]


async def test_unknown_api_key_is_refused_as_authentication_error(
    client_for: Callable[[str], stripe.StripeClient], state: StandinState
) -> None:
    with pytest.raises(stripe.AuthenticationError) as refused:
        await send_event(client_for("sk_test_not_this_one"))

    assert refused.value.http_status == 401
    assert state.accepted_events() == []


@pytest.mark.parametrize(
    ("form", "param"),
    [
        pytest.param(
            {"payload[stripe_customer_id]": "cus_1", "payload[value]": "1"},
            "event_name",
            id="no event_name",
        ),
        pytest.param(
            {
                "event_name": "x" * 101,
                "payload[stripe_customer_id]": "cus_1",
                "payload[value]": "1",
            },
            "event_name",
            id="event_name over 100",
        ),
        pytest.param({"event_name": EVENT_NAME}, "payload", id="no payload"),
        pytest.param(
            {"event_name": EVENT_NAME, "payload[value]": "1"},
            "payload[stripe_customer_id]",
            id="no customer",
        ),
        pytest.param(
            {"event_name": EVENT_NAME, "payload[stripe_customer_id]": "cus_1"},
            "payload[value]",
            id="no value",
        ),
        pytest.param(
            {
                "event_name": EVENT_NAME,
                "payload[stripe_customer_id]": "cus_1",
                "payload[value]": "1",
                "identifier": "i" * 101,
            },
            "identifier",
            id="identifier over 100",
        ),
        pytest.param(
            {
                "event_name": EVENT_NAME,
                "payload[stripe_customer_id]": "cus_1",
                "payload[value]": "1",
                "timestamp": "soon",
            },
            "timestamp",
            id="timestamp not an integer",
        ),
    ],
)
async def test_malformed_event_is_refused_naming_the_param(
    raw: httpx.AsyncClient, state: StandinState, form: dict[str, str], param: str
) -> None:
    answer = await raw.post("/v1/billing/meter_events", data=form)

    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert answer.json()["error"]["param"] == param
    assert state.accepted_events() == []


@pytest.mark.parametrize(
    ("path", "form", "param"),
    [
        pytest.param(
            "/v1/billing/meter_events",
            {
                "event_name": EVENT_NAME,
                "payload[stripe_customer_id]": "cus_1",
                "payload[value]": "1",
                "value": "1",
            },
            "value",
            id="meter event, value outside payload",
        ),
        pytest.param(
            "/v1/billing/meter_event_adjustments",
            {"type": "cancel", "event_name": EVENT_NAME, "identifier": "reading-1"},
            "identifier",
            id="adjustment, identifier outside cancel",
        ),
        pytest.param(
            "/v1/billing/meter_event_adjustments",
            {"type": "cancel", "event_name": EVENT_NAME, "cancel[id]": "reading-1"},
            "cancel[id]",
            id="adjustment, unknown key inside cancel",
        ),
    ],
)
async def test_unknown_parameter_is_refused_as_parameter_unknown(
    raw: httpx.AsyncClient,
    client: stripe.StripeClient,
    state: StandinState,
    path: str,
    form: dict[str, str],
    param: str,
) -> None:
    # Stripe refuses any parameter an endpoint does not take (error code parameter_unknown),
    # so a misspelt or misplaced field fails loudly instead of being dropped.
    await send_event(client, identifier="reading-1")

    answer = await raw.post(path, data=form)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "parameter_unknown"
    assert answer.json()["error"]["param"] == param
    assert answer.json()["error"]["message"] == f"Received unknown parameter: {param}"
    assert [(e.identifier, e.cancelled) for e in state.accepted_events()] == [("reading-1", False)]


async def test_payload_keys_follow_the_meter_customer_mapping(
    raw: httpx.AsyncClient, client: stripe.StripeClient
) -> None:
    await client.v1.billing.meters.create_async(
        {
            "display_name": "Devices",
            "event_name": "devices",
            "default_aggregation": {"formula": "last"},
            "customer_mapping": {"event_payload_key": "customer", "type": "by_id"},
            "value_settings": {"event_payload_key": "count"},
        }
    )

    answer = await raw.post(
        "/v1/billing/meter_events",
        data={
            "event_name": "devices",
            "payload[stripe_customer_id]": "cus_1",
            "payload[count]": "3",
        },
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "payload[customer]"


async def test_timestamp_older_than_35_days_is_refused_naming_timestamp(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await send_event(client, timestamp=int(time.time()) - 35 * DAY - 60)

    assert refused.value.param == "timestamp"


async def test_timestamp_more_than_5_minutes_ahead_is_refused_naming_timestamp(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await send_event(client, timestamp=int(time.time()) + 6 * 60)

    assert refused.value.param == "timestamp"


@pytest.mark.parametrize("offset", [-34 * DAY, 4 * 60], ids=["34 days old", "4 minutes ahead"])
async def test_timestamp_inside_the_window_is_accepted(
    client: stripe.StripeClient, offset: int
) -> None:
    timestamp = int(time.time()) + offset

    event = await send_event(client, timestamp=timestamp)

    assert event.timestamp == timestamp


async def test_second_event_with_same_identifier_is_refused_within_24_hours(
    client: stripe.StripeClient, state: StandinState
) -> None:
    await send_event(client, identifier="reading-7")
    state.clock.advance(DAY - 60)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await send_event(client, identifier="reading-7")

    assert refused.value.http_status == 400
    assert refused.value.user_message == "An event already exists with identifier reading-7."
    assert header_of(refused.value, "Stripe-Should-Retry") == "false"
    assert state.identifier_accept_counts() == {"reading-7": 1}
    assert state.counters_snapshot().duplicates_refused == 1


async def test_same_identifier_is_accepted_again_after_24_hours(
    client: stripe.StripeClient, state: StandinState
) -> None:
    await send_event(client, identifier="reading-8")
    state.clock.advance(DAY)

    await send_event(client, identifier="reading-8")

    assert state.identifier_accept_counts() == {"reading-8": 2}


async def test_replay_with_same_idempotency_key_returns_the_saved_answer(
    client: stripe.StripeClient, state: StandinState
) -> None:
    first = await send_event(client, idempotency_key="key-1", identifier="reading-9")

    replay = await send_event(client, idempotency_key="key-1", identifier="reading-9")

    assert replay.to_dict() == first.to_dict()
    assert replay.last_response is not None
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    assert state.identifier_accept_counts() == {"reading-9": 1}


async def test_same_idempotency_key_with_different_params_is_refused(
    client: stripe.StripeClient,
) -> None:
    await send_event(client, idempotency_key="key-2", value="1")

    with pytest.raises(stripe.IdempotencyError) as refused:
        await send_event(client, idempotency_key="key-2", value="2")

    assert refused.value.http_status == 400


async def test_idempotency_key_is_forgotten_after_24_hours(
    client: stripe.StripeClient, state: StandinState
) -> None:
    await send_event(client, idempotency_key="key-3", value="1")
    state.clock.advance(DAY)

    await send_event(client, idempotency_key="key-3", value="2")

    assert [e.value for e in state.accepted_events()] == ["1", "2"]


async def test_refused_validation_is_not_saved_under_its_idempotency_key(
    client: stripe.StripeClient, state: StandinState
) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        await send_event(client, idempotency_key="key-4", timestamp=int(time.time()) + DAY)

    await send_event(client, idempotency_key="key-4")

    assert len(state.accepted_events()) == 1


async def test_duplicate_refusal_is_saved_under_its_idempotency_key(
    client: stripe.StripeClient, state: StandinState
) -> None:
    await send_event(client, identifier="reading-10")
    state.clock.advance(DAY / 2)
    with pytest.raises(stripe.InvalidRequestError):
        await send_event(client, idempotency_key="key-5", identifier="reading-10")
    state.clock.advance(DAY / 2)  # the identifier is free again, the key is still kept

    with pytest.raises(stripe.InvalidRequestError) as replayed:
        await send_event(client, idempotency_key="key-5", identifier="reading-10")

    assert header_of(replayed.value, "Idempotent-Replayed") == "true"


async def test_request_while_another_with_the_same_key_runs_is_a_409_conflict(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.configure(StandinConfig(processing_latency_seconds=0.3))

    results = await asyncio.gather(
        send_event(client, idempotency_key="key-6", customer="cus_a"),
        send_event(client, idempotency_key="key-6", customer="cus_a"),
        return_exceptions=True,
    )

    refusals = [r for r in results if isinstance(r, stripe.StripeError)]
    assert [r.http_status for r in refusals] == [409]
    assert len(state.accepted_events()) == 1


async def test_rate_limited_request_is_not_saved_under_its_idempotency_key(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.set_faults(FaultPlan(rate_limited=1.0))
    with pytest.raises(stripe.RateLimitError):
        await send_event(client, idempotency_key="key-7")
    state.set_faults(FaultPlan())

    await send_event(client, idempotency_key="key-7")

    assert len(state.accepted_events()) == 1


async def test_concurrent_call_for_same_customer_and_meter_is_rate_limited(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.configure(StandinConfig(processing_latency_seconds=0.3))

    results = await asyncio.gather(
        send_event(client, customer="cus_a"),
        send_event(client, customer="cus_a"),
        return_exceptions=True,
    )

    refusals = [r for r in results if isinstance(r, Exception)]
    assert len(refusals) == 1
    assert isinstance(refusals[0], stripe.RateLimitError)
    assert header_of(refusals[0], "Stripe-Rate-Limited-Reason") == "resource-specific"
    assert state.counters_snapshot().rate_limited == 1


async def test_concurrent_calls_for_different_customers_are_all_accepted(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.configure(StandinConfig(processing_latency_seconds=0.2))

    await asyncio.gather(send_event(client, customer="cus_a"), send_event(client, customer="cus_b"))

    assert len(state.accepted_events()) == 2


async def test_calls_beyond_the_account_rate_limit_are_refused(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.configure(StandinConfig(account_rate_limit_per_second=2))
    await send_event(client, customer="cus_a")
    await send_event(client, customer="cus_b")

    with pytest.raises(stripe.RateLimitError) as refused:
        await send_event(client, customer="cus_c")

    assert refused.value.http_status == 429
    assert header_of(refused.value, "Stripe-Rate-Limited-Reason") == "endpoint-rate"


async def test_account_rate_limit_frees_up_after_a_second(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.configure(StandinConfig(account_rate_limit_per_second=1))
    await send_event(client)
    state.clock.advance(1.0)

    await send_event(client)

    assert len(state.accepted_events()) == 2


async def test_cancelled_event_no_longer_counts(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    await create_meter()
    await send_event(client, customer="cus_1", value="5", identifier="keep")
    await send_event(client, customer="cus_1", value="7", identifier="drop")

    adjustment = await client.v1.billing.meter_event_adjustments.create_async(
        {"type": "cancel", "event_name": EVENT_NAME, "cancel": {"identifier": "drop"}}
    )

    assert (adjustment.object, adjustment.type) == ("billing.meter_event_adjustment", "cancel")
    assert state.accepted_totals() == {("cus_1", EVENT_NAME): Decimal(5)}


async def test_cancel_of_unknown_identifier_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.billing.meter_event_adjustments.create_async(
            {"type": "cancel", "event_name": EVENT_NAME, "cancel": {"identifier": "never-sent"}}
        )

    assert refused.value.param == "cancel[identifier]"


async def test_cancel_after_24_hours_is_refused(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    await create_meter()
    await send_event(client, customer="cus_1", value="5", identifier="old")
    state.clock.advance(DAY)

    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.billing.meter_event_adjustments.create_async(
            {"type": "cancel", "event_name": EVENT_NAME, "cancel": {"identifier": "old"}}
        )

    assert state.accepted_totals() == {("cus_1", EVENT_NAME): Decimal(5)}


async def test_adjustment_of_another_type_is_refused(raw: httpx.AsyncClient) -> None:
    answer = await raw.post(
        "/v1/billing/meter_event_adjustments",
        data={"type": "void", "event_name": EVENT_NAME, "cancel[identifier]": unique("id")},
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "type"


async def test_sdk_params_round_trip_through_bracket_notation(
    client: stripe.StripeClient, state: StandinState
) -> None:
    params = event_params(customer="cus_[x]", value="12")

    await client.v1.billing.meter_events.create_async(params)

    assert state.accepted_events()[0].payload == {"stripe_customer_id": "cus_[x]", "value": "12"}
