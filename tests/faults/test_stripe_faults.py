"""Stripe failing 30% of meter calls in every way it can, and Stripe answering very slowly."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from sensor_billing.db import SessionFactory
from sensor_billing.devtools.stripe_standin import FaultPlan, RunningStandin, StandinConfig
from tests.faults.checks import assert_usage_exact, control, days_of_usage, settle
from tests.faults.servers import CountingStripeHTTPClient
from tests.metering.conftest import CLIENT_TIMEOUT_SECONDS, DAY

pytestmark = pytest.mark.faults


async def test_thirty_percent_of_stripe_calls_failing_bills_every_window_once(
    sessions: SessionFactory,
    standin: RunningStandin,
    start_worker: Any,
    observe: Any,
    stripe_calls: CountingStripeHTTPClient,
) -> None:
    orgs = await days_of_usage(sessions, organizations=6, days=10, seed=30)
    # 7.5% each of 429, 500, timeout and dropped connection. The last three happen after
    # Stripe recorded the event: the lost acknowledgement a naive retry bills twice.
    await control(
        standin,
        "faults",
        FaultPlan(
            rate_limited=0.075,
            server_error=0.075,
            timeout=0.075,
            dropped_connection=0.075,
            recorded_before_server_error=True,
            recorded_before_timeout=True,
            recorded_before_dropped_connection=True,
            timeout_seconds=CLIENT_TIMEOUT_SECONDS * 2,
            seed=30,
        ),
    )
    _, sweeps = await start_worker()
    await settle(sessions, within=90)

    counts = await assert_usage_exact(sessions, standin, orgs, DAY)
    faults = sum(counts["faults_injected"].values())
    assert faults >= 0.2 * counts["events_accepted"], counts
    # Lost acknowledgements were retried and answered from Stripe's idempotency layer or
    # refused as duplicate identifiers; either way they counted once.
    assert counts["idempotent_replays"] + counts["duplicates_refused"] > 0, counts
    observe(
        fault="Stripe: 30% 429/500/timeout/dropped",
        **asdict(sweeps),
        **counts,
        **stripe_calls.counts(),
    )


async def test_stripe_answering_after_the_client_gave_up_bills_every_window_once(
    sessions: SessionFactory,
    standin: RunningStandin,
    start_worker: Any,
    observe: Any,
    stripe_calls: CountingStripeHTTPClient,
) -> None:
    orgs = await days_of_usage(sessions, organizations=4, days=6, seed=31)
    # Every call takes longer than the client waits: each is recorded after the client timed
    # out, and its retry finds the first still running (409) or its saved answer (replay).
    await control(
        standin, "config", StandinConfig(processing_latency_seconds=CLIENT_TIMEOUT_SECONDS * 1.6)
    )
    _, sweeps = await start_worker()
    await settle(sessions, within=90)

    counts = await assert_usage_exact(sessions, standin, orgs, DAY)
    assert counts["retries_committed"] >= counts["events_accepted"], counts
    assert counts["idempotent_replays"] + counts["duplicates_refused"] > 0, counts
    observe(
        fault="Stripe: every answer slower than the client's timeout",
        **asdict(sweeps),
        **counts,
        **stripe_calls.counts(),
    )
