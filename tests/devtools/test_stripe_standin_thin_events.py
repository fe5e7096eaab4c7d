"""Meter error thin events: signed to the event destination, fetched through the official SDK."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import stripe
from stripe.events import (
    V1BillingMeterErrorReportTriggeredEventNotification,
    V1BillingMeterNoMeterFoundEventNotification,
)

from sensor_billing.devtools.stripe_standin import FaultPlan, StandinState
from tests.devtools.helpers import CustomerFactory, MeterFactory, Receiver, send_event

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)

DESTINATION_SECRET = "whsec_standin_destination"


async def set_destination(control: httpx.AsyncClient, url: str) -> None:
    answer = await control.post(
        "/event_destination", json={"url": url, "secret": DESTINATION_SECRET}
    )
    assert answer.status_code == 200, answer.text


async def test_unknown_customer_is_sent_as_a_signed_thin_event_the_sdk_parses_and_fetches(
    client: stripe.StripeClient,
    create_meter: MeterFactory,
    create_customer: CustomerFactory,
    control: httpx.AsyncClient,
    receiver: Receiver,
) -> None:
    meter = await create_meter()
    await create_customer()
    await set_destination(control, receiver.url)

    await send_event(client, customer="cus_stranger", identifier="sb.org.meter.1")
    await receiver.wait_for(1)

    body, signature = receiver.deliveries[0]
    notification = client.parse_event_notification(body, signature, DESTINATION_SECRET)
    assert isinstance(notification, V1BillingMeterErrorReportTriggeredEventNotification)
    assert notification.related_object.id == meter.id
    assert set(json.loads(body)) == {
        "id", "object", "type", "created", "livemode", "context", "related_object"
    }  # fmt: skip
    event = await notification.fetch_event_async()
    assert event.id == notification.id
    [error_type] = event.data.reason.error_types
    assert error_type.code == "meter_event_customer_not_found"
    assert error_type.error_count == event.data.reason.error_count == 1
    assert error_type.sample_errors[0].request.identifier == "sb.org.meter.1"


async def test_an_event_without_a_meter_is_a_no_meter_found_event_without_related_object(
    client: stripe.StripeClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    await set_destination(control, receiver.url)

    await send_event(client, event_name="nobody_meters_this", identifier="orphan")
    await receiver.wait_for(1)

    body, signature = receiver.deliveries[0]
    notification = client.parse_event_notification(body, signature, DESTINATION_SECRET)
    assert isinstance(notification, V1BillingMeterNoMeterFoundEventNotification)
    assert "related_object" not in json.loads(body)
    event = await client.v2.core.events.retrieve_async(notification.id)
    assert event.to_dict()["data"]["reason"]["error_types"][0]["code"] == "no_meter"


async def test_a_valid_event_sends_nothing(
    client: stripe.StripeClient,
    create_meter: MeterFactory,
    create_customer: CustomerFactory,
    control: httpx.AsyncClient,
    receiver: Receiver,
    state: StandinState,
) -> None:
    await create_meter()
    customer = await create_customer()
    await set_destination(control, receiver.url)

    await send_event(client, customer=customer)
    await asyncio.sleep(0.2)

    assert receiver.deliveries == []
    assert state.thin_events() == []


async def test_without_a_destination_the_event_is_kept_but_not_sent(
    client: stripe.StripeClient, state: StandinState, receiver: Receiver
) -> None:
    await send_event(client, event_name="nobody_meters_this")
    await asyncio.sleep(0.2)

    assert len(state.thin_events()) == 1
    assert state.event_deliveries() == []


async def test_deliver_events_resends_what_got_no_2xx_and_named_events_again(
    client: stripe.StripeClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.statuses = [500]
    await set_destination(control, receiver.url)
    await send_event(client, event_name="nobody_meters_this")
    await receiver.wait_for(1)

    retried = (await control.post("/deliver_events")).json()["deliveries"]
    again = (await control.post("/deliver_events")).json()["deliveries"]
    [event_id] = [delivery["event_id"] for delivery in retried]
    duplicate = await control.post("/deliver_events", json={"event_ids": [event_id]})

    assert [d["status"] for d in retried] == [200]
    assert again == []
    assert duplicate.json()["deliveries"][0]["status"] == 200
    assert len(receiver.deliveries) == 3
    assert len({json.loads(body)["id"] for body, _ in receiver.deliveries}) == 1
    # Each attempt is signed anew.
    assert all(signature.startswith("t=") for _, signature in receiver.deliveries)


async def test_fetching_an_event_needs_the_secret_key_and_an_existing_id(
    client: stripe.StripeClient, raw: httpx.AsyncClient, standin_url: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v2.core.events.retrieve_async("evt_test_nothing")
    async with httpx.AsyncClient(base_url=standin_url) as anonymous:
        unauthenticated = await anonymous.get("/v2/core/events/evt_test_nothing")

    assert missing.value.http_status == 404
    assert unauthenticated.status_code == 401


async def test_injected_faults_apply_to_fetching_an_event(
    client: stripe.StripeClient, state: StandinState
) -> None:
    await send_event(client, event_name="nobody_meters_this")
    [event] = state.thin_events()
    state.set_faults(FaultPlan(server_error=1.0))

    with pytest.raises(stripe.APIError) as failure:
        await client.v2.core.events.retrieve_async(event.id)

    assert failure.value.http_status == 500


async def test_a_destination_needs_an_http_url_and_a_whsec_secret(
    control: httpx.AsyncClient,
) -> None:
    bad_secret = await control.post(
        "/event_destination", json={"url": "http://127.0.0.1:1/x", "secret": "sk_test_x"}
    )
    bad_url = await control.post(
        "/event_destination", json={"url": "ftp://example", "secret": DESTINATION_SECRET}
    )
    nothing_to_deliver_to = await control.post("/deliver_events")

    assert (bad_secret.status_code, bad_url.status_code) == (400, 400)
    assert nothing_to_deliver_to.status_code == 400
    assert (await control.get("/event_destination")).json() is None
