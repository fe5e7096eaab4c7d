"""The control API under /_standin/, `Request-Id` headers, and running as a process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest
import stripe

from sensor_billing.devtools.stripe_standin import (
    FaultPlan,
    StandinState,
    create_app,
)
from tests.devtools.helpers import API_KEY, send_event

pytestmark = pytest.mark.filterwarnings(
    # stripe 16.1's HTTPXClient hands httpx the form body as `data=bytes`.
    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
)


async def test_state_lists_accepted_events_with_how_they_arrived(
    client: stripe.StripeClient, control: httpx.AsyncClient
) -> None:
    await send_event(
        client, idempotency_key="key-ctl", customer="cus_1", value="6", identifier="ctl-1"
    )

    [event] = (await control.get("/state")).json()["events"]

    assert {k: event[k] for k in ("identifier", "customer", "value", "via", "idempotency_key")} == {
        "identifier": "ctl-1",
        "customer": "cus_1",
        "value": "6",
        "via": "v1",
        "idempotency_key": "key-ctl",
    }


async def test_state_counts_refused_duplicates(
    client: stripe.StripeClient, control: httpx.AsyncClient
) -> None:
    await send_event(client, identifier="ctl-2")
    with pytest.raises(stripe.InvalidRequestError):
        await send_event(client, identifier="ctl-2")

    assert (await control.get("/state")).json()["counters"]["duplicates_refused"] == 1


async def test_faults_set_over_http_apply(
    client: stripe.StripeClient, control: httpx.AsyncClient, state: StandinState
) -> None:
    answer = await control.post("/faults", json={"server_error": 1.0})

    with pytest.raises(stripe.APIError):
        await send_event(client)
    assert answer.status_code == 200
    assert state.faults.plan == FaultPlan(server_error=1.0)


async def test_invalid_fault_plan_over_http_is_rejected(control: httpx.AsyncClient) -> None:
    answer = await control.post("/faults", json={"timeout": 2.0})

    assert answer.status_code == 400


async def test_config_set_over_http_applies(
    control: httpx.AsyncClient, state: StandinState
) -> None:
    await control.post("/config", json={"account_rate_limit_per_second": 5})

    assert state.config.account_rate_limit_per_second == 5


async def test_clock_advance_over_http_moves_the_stand_in_clock(
    control: httpx.AsyncClient, state: StandinState
) -> None:
    before = state.clock.now()

    await control.post("/clock", json={"advance_seconds": 86400})

    assert state.clock.now() - before >= 86400


async def test_reset_forgets_events_faults_and_clock(
    client: stripe.StripeClient, control: httpx.AsyncClient, state: StandinState
) -> None:
    await send_event(client)
    state.set_faults(FaultPlan(timeout=1.0))
    state.clock.advance(3600)

    await control.post("/reset")

    assert state.accepted_events() == []
    assert state.faults.plan == FaultPlan()
    assert abs(state.clock.now() - time.time()) < 5


async def test_control_api_refuses_callers_that_are_not_loopback() -> None:
    transport = httpx.ASGITransport(
        app=create_app(StandinState([API_KEY])), client=("203.0.113.7", 50000)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://standin") as http:
        answer = await http.get("/_standin/state")

    assert answer.status_code == 403


async def test_every_answer_carries_a_request_id(raw: httpx.AsyncClient) -> None:
    answers = [
        await raw.get("/v1/customers"),
        await raw.post("/v1/billing/meter_events", data={}),
        await raw.get("/v1/not_an_endpoint"),
    ]

    assert [a.headers.get("Request-Id", "")[:4] for a in answers] == ["req_"] * 3


async def test_unknown_url_is_answered_in_stripe_error_shape(raw: httpx.AsyncClient) -> None:
    answer = await raw.post("/v1/not_an_endpoint")

    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "invalid_request_error"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_module_runs_as_a_process_with_the_given_api_key() -> None:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "sensor_billing.devtools.stripe_standin",
        "--port",
        str(port),
        "--api-key",
        "sk_test_process",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # fixed argv
    try:
        answer = _wait_for_answer(
            f"http://127.0.0.1:{port}/v1/customers", {"Authorization": "Bearer sk_test_process"}
        )
        assert answer.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_answer(url: str, headers: dict[str, str]) -> httpx.Response:
    deadline = time.monotonic() + 10
    while True:
        try:
            return httpx.get(url, headers=headers)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
