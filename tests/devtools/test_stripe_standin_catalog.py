"""Meters, customers and meter event summaries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import StandinConfig, StandinState
from tests.devtools.helpers import API_KEY, EVENT_NAME, MeterFactory, send_event

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)

HOUR = 3600


def hour_floor(state: StandinState) -> int:
    now = int(state.clock.now())
    return now - now % HOUR


async def test_meter_is_created_with_stripe_fields(create_meter: MeterFactory) -> None:
    meter = await create_meter(formula="last")

    assert (meter.object, meter.status, meter.event_name) == ("billing.meter", "active", EVENT_NAME)
    assert meter.default_aggregation.formula == "last"
    assert meter.customer_mapping.event_payload_key == "stripe_customer_id"


async def test_second_active_meter_with_the_same_event_name_is_refused(
    create_meter: MeterFactory,
) -> None:
    await create_meter()

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await create_meter()

    assert refused.value.param == "event_name"


async def test_deactivated_meter_frees_its_event_name(
    client: stripe.StripeClient, create_meter: MeterFactory
) -> None:
    first = await create_meter()
    deactivated = await client.v1.billing.meters.deactivate_async(first.id)

    second = await create_meter()

    assert deactivated.status == "inactive"
    assert deactivated.status_transitions.deactivated_at is not None
    assert second.id != first.id


async def test_meter_with_an_unknown_formula_is_refused(create_meter: MeterFactory) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await create_meter(formula="max")

    assert refused.value.param == "default_aggregation[formula]"


async def test_meter_without_display_name_is_refused(raw: httpx.AsyncClient) -> None:
    answer = await raw.post(
        "/v1/billing/meters",
        data={"event_name": EVENT_NAME, "default_aggregation[formula]": "sum"},
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "display_name"


async def test_unknown_meter_is_not_found(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.billing.meters.retrieve_async("mtr_missing")

    assert refused.value.http_status == 404


async def test_meter_is_retrieved_by_id(
    client: stripe.StripeClient, create_meter: MeterFactory
) -> None:
    meter = await create_meter()

    assert (await client.v1.billing.meters.retrieve_async(meter.id)).id == meter.id


async def test_meter_list_pages_with_starting_after_and_has_more(
    client: stripe.StripeClient, create_meter: MeterFactory
) -> None:
    created = [(await create_meter(event_name=f"meter_{n}")).id for n in range(3)]

    first = await client.v1.billing.meters.list_async({"limit": 2})
    rest = await client.v1.billing.meters.list_async(
        {"limit": 2, "starting_after": first.data[-1].id}
    )

    assert first.has_more is True
    assert rest.has_more is False
    assert [m.id for m in [*first.data, *rest.data]] == created[::-1]


async def test_customer_creation_honours_the_idempotency_key(client: stripe.StripeClient) -> None:
    first = await client.v1.customers.create_async({"name": "A"}, {"idempotency_key": "cust-1"})
    again = await client.v1.customers.create_async({"name": "A"}, {"idempotency_key": "cust-1"})

    assert again.id == first.id
    assert len((await client.v1.customers.list_async()).data) == 1


async def test_customer_keeps_name_email_and_metadata(client: stripe.StripeClient) -> None:
    created = await client.v1.customers.create_async(
        {"name": "Cold Chain", "email": "ops@example.com", "metadata": {"tenant": "t_1"}}
    )

    fetched = await client.v1.customers.retrieve_async(created.id)

    assert (fetched.name, fetched.email) == ("Cold Chain", "ops@example.com")
    assert fetched.metadata is not None
    assert fetched.metadata.to_dict() == {"tenant": "t_1"}


async def test_customer_update_sets_the_fields_given(client: stripe.StripeClient) -> None:
    created = await client.v1.customers.create_async(
        {"email": "ops@example.com", "metadata": {"tenant": "t_1"}}
    )

    await client.v1.customers.update_async(created.id, {"name": "Cold Chain"})

    fetched = await client.v1.customers.retrieve_async(created.id)
    assert (fetched.name, fetched.email) == ("Cold Chain", "ops@example.com")
    assert fetched.metadata is not None
    assert fetched.metadata.to_dict() == {"tenant": "t_1"}


async def test_updating_a_deleted_customer_is_not_found(client: stripe.StripeClient) -> None:
    customer = await client.v1.customers.create_async({"name": "Gone"})
    await client.v1.customers.delete_async(customer.id)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.customers.update_async(customer.id, {"name": "Back"})

    assert refused.value.http_status == 404


async def test_deleted_customer_leaves_the_list_and_reads_as_deleted(
    client: stripe.StripeClient,
) -> None:
    customer = await client.v1.customers.create_async({"name": "Gone"})

    deleted = await client.v1.customers.delete_async(customer.id)

    assert deleted.deleted is True
    assert (await client.v1.customers.list_async()).data == []
    assert (await client.v1.customers.retrieve_async(customer.id)).to_dict()["deleted"] is True


async def test_deleting_a_deleted_customer_is_not_found(client: stripe.StripeClient) -> None:
    customer = await client.v1.customers.create_async({"name": "Gone"})
    await client.v1.customers.delete_async(customer.id)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.customers.delete_async(customer.id)

    assert refused.value.http_status == 404


async def test_unknown_customer_is_not_found(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.customers.retrieve_async("cus_missing")

    assert refused.value.http_status == 404


async def test_sum_summary_adds_events_in_start_inclusive_end_exclusive_range(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    meter = await create_meter()
    start = hour_floor(state) - 2 * HOUR
    end = start + HOUR
    await send_event(client, customer="cus_1", value="3", timestamp=start)
    await send_event(client, customer="cus_1", value="4", timestamp=end - 1)
    await send_event(client, customer="cus_1", value="100", timestamp=end)
    await send_event(client, customer="cus_2", value="100", timestamp=start)

    summaries = await client.v1.billing.meters.event_summaries.list_async(
        meter.id, {"customer": "cus_1", "start_time": start, "end_time": end}
    )

    [summary] = summaries.data
    assert (summary.object, summary.aggregated_value) == ("billing.meter_event_summary", 7)
    assert (summary.start_time, summary.end_time, summary.meter) == (start, end, meter.id)


async def test_last_summary_takes_the_value_with_the_latest_timestamp(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    meter = await create_meter(formula="last")
    start = hour_floor(state) - HOUR
    await send_event(client, customer="cus_1", value="8", timestamp=start + 600)
    await send_event(client, customer="cus_1", value="5", timestamp=start + 60)

    summaries = await client.v1.billing.meters.event_summaries.list_async(
        meter.id, {"customer": "cus_1", "start_time": start, "end_time": start + HOUR}
    )

    assert [s.aggregated_value for s in summaries.data] == [8]


async def test_count_summary_counts_events(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    meter = await create_meter(formula="count")
    start = hour_floor(state) - HOUR
    for value in ("10", "20", "30"):
        await send_event(client, customer="cus_1", value=value, timestamp=start + 60)

    summaries = await client.v1.billing.meters.event_summaries.list_async(
        meter.id, {"customer": "cus_1", "start_time": start, "end_time": start + HOUR}
    )

    assert [s.aggregated_value for s in summaries.data] == [3]


async def test_summary_leaves_out_cancelled_events(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    meter = await create_meter()
    start = hour_floor(state) - HOUR
    await send_event(client, customer="cus_1", value="2", timestamp=start, identifier="a")
    await send_event(client, customer="cus_1", value="9", timestamp=start, identifier="b")
    await client.v1.billing.meter_event_adjustments.create_async(
        {"type": "cancel", "event_name": EVENT_NAME, "cancel": {"identifier": "b"}}
    )

    summaries = await client.v1.billing.meters.event_summaries.list_async(
        meter.id, {"customer": "cus_1", "start_time": start, "end_time": start + HOUR}
    )

    assert [s.aggregated_value for s in summaries.data] == [2]


async def test_hourly_summaries_split_the_range_newest_first(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    meter = await create_meter()
    start = hour_floor(state) - 2 * HOUR
    await send_event(client, customer="cus_1", value="1", timestamp=start + 10)
    await send_event(client, customer="cus_1", value="5", timestamp=start + HOUR + 10)

    summaries = await client.v1.billing.meters.event_summaries.list_async(
        meter.id,
        {
            "customer": "cus_1",
            "start_time": start,
            "end_time": start + 2 * HOUR,
            "value_grouping_window": "hour",
        },
    )

    assert [(s.start_time, s.aggregated_value) for s in summaries.data] == [
        (start + HOUR, 5),
        (start, 1),
    ]


async def test_summaries_page_with_has_more(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    meter = await create_meter()
    start = hour_floor(state) - 3 * HOUR
    params = {"customer": "cus_1", "start_time": start, "end_time": start + 3 * HOUR}

    first = await client.v1.billing.meters.event_summaries.list_async(
        meter.id,
        {**params, "value_grouping_window": "hour", "limit": 2},  # type: ignore[typeddict-item]
    )

    assert (len(first.data), first.has_more) == (2, True)


async def test_summary_bounds_must_align_with_minutes(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    meter = await create_meter()
    start = hour_floor(state) - HOUR + 30

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.billing.meters.event_summaries.list_async(
            meter.id, {"customer": "cus_1", "start_time": start, "end_time": start + 1770}
        )

    assert refused.value.param == "start_time"


async def test_hourly_summary_bounds_must_align_with_hours(
    client: stripe.StripeClient, state: StandinState, create_meter: MeterFactory
) -> None:
    meter = await create_meter()
    start = hour_floor(state) - HOUR

    with pytest.raises(stripe.InvalidRequestError) as refused:
        await client.v1.billing.meters.event_summaries.list_async(
            meter.id,
            {
                "customer": "cus_1",
                "start_time": start,
                "end_time": start + 30 * 60,
                "value_grouping_window": "hour",
            },
        )

    assert refused.value.param == "end_time"


async def test_summary_without_customer_is_refused(
    raw: httpx.AsyncClient, state: StandinState, create_meter: MeterFactory
) -> None:
    meter = await create_meter()
    start = hour_floor(state) - HOUR

    answer = await raw.get(
        f"/v1/billing/meters/{meter.id}/event_summaries",
        params={"start_time": start, "end_time": start + HOUR},
    )

    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "customer"


async def test_two_concurrent_creates_with_one_key_make_one_customer(
    client: stripe.StripeClient, state: StandinState
) -> None:
    state.configure(StandinConfig(write_latency_seconds=0.2))

    outcomes = await asyncio.gather(
        client.v1.customers.create_async({"name": "A"}, {"idempotency_key": "org-1"}),
        client.v1.customers.create_async({"name": "A"}, {"idempotency_key": "org-1"}),
        return_exceptions=True,
    )

    created = [o for o in outcomes if isinstance(o, stripe.Customer)]
    # The SDK raises a 409 as APIError (STRIPE.md).
    refused = [o for o in outcomes if isinstance(o, stripe.APIError)]
    assert (len(created), len(refused)) == (1, 1)
    assert refused[0].http_status == 409
    assert [c.id for c in state.customers.values()] == [created[0].id]


async def test_a_retried_concurrent_create_gets_the_customer_the_first_made(
    client_for: Callable[[str], stripe.StripeClient], standin_url: str, state: StandinState
) -> None:
    state.configure(StandinConfig(write_latency_seconds=0.2))
    http = stripe.HTTPXClient(timeout=5)
    retrying = stripe.StripeClient(
        API_KEY, http_client=http, base_addresses={"api": standin_url}, max_network_retries=3
    )
    try:
        first, second = await asyncio.gather(
            retrying.v1.customers.create_async({"name": "A"}, {"idempotency_key": "org-2"}),
            retrying.v1.customers.create_async({"name": "A"}, {"idempotency_key": "org-2"}),
        )
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]  # unannotated in the SDK

    assert first.id == second.id
    assert len(state.customers) == 1


async def test_an_empty_metadata_value_unsets_its_key(client: stripe.StripeClient) -> None:
    created = await client.v1.customers.create_async({"metadata": {"a": "1", "b": "2"}})

    updated = await client.v1.customers.update_async(created.id, {"metadata": {"a": ""}})

    assert updated.metadata is not None
    assert updated.metadata.to_dict() == {"b": "2"}
