"""/v1 requests show on `GET /metrics` by method, operation and status: what an operator watches
to see the product's backend failing to authenticate or getting errors. The operation is the
route's template, so organization ids never become label values."""

from __future__ import annotations

import httpx

from sensor_billing.db import SessionFactory
from tests.observability.conftest import Samples, scrape, value
from tests.support.api import add_organization

REQUESTS = "sensor_billing_api_requests_total"
DURATIONS = "sensor_billing_api_request_duration_seconds_count"
BILLING_ROUTE = "/v1/organizations/{organization_id}/billing"
UNKNOWN_ORGANIZATION = "00000000-0000-4000-8000-000000000000"


def requests(samples: Samples, route: str, status: str) -> float:
    return value(samples, REQUESTS, method="GET", route=route, status=status)


async def test_v1_requests_are_counted_by_operation_and_status(
    api: httpx.AsyncClient, sessions: SessionFactory
) -> None:
    organization_id = await add_organization(sessions)
    before = await scrape(api)

    assert (await api.get(f"/v1/organizations/{organization_id}/billing")).status_code == 200
    assert (await api.get(f"/v1/organizations/{UNKNOWN_ORGANIZATION}/billing")).status_code == 404
    unauthenticated = await api.get(
        f"/v1/organizations/{organization_id}/billing", headers={"Authorization": ""}
    )
    assert unauthenticated.status_code == 401
    assert (await api.get("/v1/no-such-operation")).status_code == 404

    after = await scrape(api)
    for route, status in [
        (BILLING_ROUTE, "200"),
        (BILLING_ROUTE, "404"),
        (BILLING_ROUTE, "401"),
        ("unmatched", "404"),
    ]:
        assert requests(after, route, status) - requests(before, route, status) == 1, (
            route,
            status,
        )
    durations = value(after, DURATIONS, method="GET", route=BILLING_ROUTE) - value(
        before, DURATIONS, method="GET", route=BILLING_ROUTE
    )
    assert durations == 3
    labels = {dict(sample_labels).get("route") for _, sample_labels in after}
    assert not any(str(organization_id) in str(label) for label in labels)


async def test_requests_outside_v1_are_not_counted_as_api_requests(
    api: httpx.AsyncClient,
) -> None:
    before = await scrape(api)

    assert (await api.get("/healthz")).status_code == 200

    after = await scrape(api)
    api_series_before = {key: v for key, v in before.items() if key[0] == REQUESTS}
    api_series_after = {key: v for key, v in after.items() if key[0] == REQUESTS}
    assert api_series_after == api_series_before
