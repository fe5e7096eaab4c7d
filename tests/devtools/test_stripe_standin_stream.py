"""v2 meter event sessions and the meter event stream, through the official SDK."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import ErrorCode, StandinState
from tests.devtools.helpers import (
    MeterFactory,
    StreamClientFactory,
    send_event,
    stream_event,
)

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the request body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


async def test_meter_event_session_token_lives_15_minutes(client: stripe.StripeClient) -> None:
    session = await client.v2.billing.meter_event_session.create_async()

    lifetime = datetime.fromisoformat(session.expires_at) - datetime.fromisoformat(session.created)
    assert session.object == "v2.billing.meter_event_session"
    assert session.livemode is False
    assert lifetime == timedelta(minutes=15)


async def test_session_creation_needs_the_secret_key(
    client_for: Callable[[str], stripe.StripeClient],
) -> None:
    with pytest.raises(stripe.AuthenticationError):
        await client_for("sk_test_wrong").v2.billing.meter_event_session.create_async()


async def test_streamed_events_are_accepted_with_the_session_token(
    stream_client: StreamClientFactory, state: StandinState
) -> None:
    stream = await stream_client()

    await stream.v2.billing.meter_event_stream.create_async(
        {"events": [stream_event(identifier="s-1"), stream_event(identifier="s-2")]}
    )

    assert [(e.identifier, e.via) for e in state.accepted_events()] == [
        ("s-1", "v2"),
        ("s-2", "v2"),
    ]


async def test_stream_answers_an_empty_object(
    standin_url: str, client: stripe.StripeClient
) -> None:
    session = await client.v2.billing.meter_event_session.create_async()
    async with httpx.AsyncClient(base_url=standin_url) as http:
        answer = await http.post(
            "/v2/billing/meter_event_stream",
            json={"events": [dict(stream_event())]},
            headers={"Authorization": f"Bearer {session.authentication_token}"},
        )

    assert (answer.status_code, answer.json()) == (200, {})


async def test_stream_timestamp_is_read_as_rfc_3339(
    stream_client: StreamClientFactory, state: StandinState
) -> None:
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    stream = await stream_client()

    await stream.v2.billing.meter_event_stream.create_async(
        {"events": [stream_event(timestamp=moment.isoformat().replace("+00:00", "Z"))]}
    )

    assert [e.timestamp for e in state.accepted_events()] == [int(moment.timestamp())]


async def test_stream_with_unknown_token_is_refused_as_authentication_error(
    client_for: Callable[[str], stripe.StripeClient],
) -> None:
    stream = client_for("mes_token_never_issued")

    with pytest.raises(stripe.AuthenticationError):
        await stream.v2.billing.meter_event_stream.create_async({"events": [stream_event()]})


async def test_stream_refuses_the_secret_key_in_place_of_a_session_token(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.AuthenticationError):
        await client.v2.billing.meter_event_stream.create_async({"events": [stream_event()]})


async def test_stream_with_expired_token_raises_temporary_session_expired(
    stream_client: StreamClientFactory, state: StandinState
) -> None:
    stream = await stream_client()
    state.clock.advance(15 * 60)

    with pytest.raises(stripe.TemporarySessionExpiredError) as refused:
        await stream.v2.billing.meter_event_stream.create_async({"events": [stream_event()]})

    assert refused.value.http_status == 401
    assert refused.value.code == "billing_meter_event_session_expired"
    assert state.accepted_events() == []


async def test_stream_token_still_works_just_before_15_minutes(
    stream_client: StreamClientFactory, state: StandinState
) -> None:
    stream = await stream_client()
    state.clock.advance(15 * 60 - 5)

    await stream.v2.billing.meter_event_stream.create_async({"events": [stream_event()]})

    assert len(state.accepted_events()) == 1


async def test_stream_batch_of_more_than_100_events_is_refused(
    stream_client: StreamClientFactory, state: StandinState
) -> None:
    stream = await stream_client()

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await stream.v2.billing.meter_event_stream.create_async(
            {"events": [stream_event() for _ in range(101)]}
        )

    assert refused.value.http_status == 400
    assert state.accepted_events() == []


async def test_stream_batch_of_100_events_is_accepted(
    stream_client: StreamClientFactory, state: StandinState
) -> None:
    stream = await stream_client()

    await stream.v2.billing.meter_event_stream.create_async(
        {"events": [stream_event() for _ in range(100)]}
    )

    assert len(state.accepted_events()) == 100


async def test_stream_event_without_event_name_is_refused(
    standin_url: str, client: stripe.StripeClient
) -> None:
    session = await client.v2.billing.meter_event_session.create_async()
    async with httpx.AsyncClient(base_url=standin_url) as http:
        answer = await http.post(
            "/v2/billing/meter_event_stream",
            json={"events": [{"payload": {"stripe_customer_id": "cus_1", "value": "1"}}]},
            headers={"Authorization": f"Bearer {session.authentication_token}"},
        )

    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"


async def test_stream_drops_duplicate_identifiers_silently(
    client: stripe.StripeClient, stream_client: StreamClientFactory, state: StandinState
) -> None:
    await send_event(client, identifier="dup-1")
    stream = await stream_client()

    await stream.v2.billing.meter_event_stream.create_async(
        {
            "events": [
                stream_event(identifier="dup-1"),
                stream_event(identifier="dup-2"),
                stream_event(identifier="dup-2"),
            ]
        }
    )

    assert state.identifier_accept_counts() == {"dup-1": 1, "dup-2": 1}
    assert state.counters_snapshot().duplicates_deduplicated == 2


async def test_stream_event_too_old_becomes_an_error_report_not_a_refusal(
    stream_client: StreamClientFactory, state: StandinState, create_meter: MeterFactory
) -> None:
    await create_meter()
    stream = await stream_client()
    too_old = (datetime.now(UTC) - timedelta(days=36)).isoformat()

    await stream.v2.billing.meter_event_stream.create_async(
        {"events": [stream_event(timestamp=too_old)]}
    )

    assert [r.code for r in state.error_reports()] == [ErrorCode.TIMESTAMP_TOO_FAR_IN_PAST]
    assert state.accepted_totals() == {}


async def test_stream_event_without_value_is_reported_as_value_not_found(
    stream_client: StreamClientFactory, state: StandinState, create_meter: MeterFactory
) -> None:
    await create_meter()
    stream = await stream_client()
    event = stream_event()
    event["payload"] = {"stripe_customer_id": "cus_1"}

    await stream.v2.billing.meter_event_stream.create_async({"events": [event]})

    assert [r.code for r in state.error_reports()] == [ErrorCode.VALUE_NOT_FOUND]


async def test_stream_event_without_customer_is_reported_as_no_customer_defined(
    stream_client: StreamClientFactory, state: StandinState, create_meter: MeterFactory
) -> None:
    await create_meter()
    stream = await stream_client()
    event = stream_event()
    event["payload"] = {"value": "3"}

    await stream.v2.billing.meter_event_stream.create_async({"events": [event]})

    assert [r.code for r in state.error_reports()] == [ErrorCode.NO_CUSTOMER_DEFINED]
