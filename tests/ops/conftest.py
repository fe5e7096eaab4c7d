"""The /ops pages on the test database and Redis: settings with OPS_TOKEN, the app driven
through httpx, and helpers that read the numbers a page shows."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from bullmq import Worker

from sensor_billing.db import SessionFactory
from sensor_billing.jobs.connection import fix_bullmq_block_timeouts, open_queue
from sensor_billing.jobs.registry import JobNames, QueueNames
from sensor_billing.settings import Settings, load_settings
from tests.support.app import running_app

OPS_TOKEN = "ops-test-token-5f0c9a7e41b2"
STRIPE_KEY = "sk_test_ops_secret_key_9d8c7b6a"
WEBHOOK_SECRET = "whsec_ops_webhook_secret_1a2b3c"
HTML = {"Accept": "text/html,application/xhtml+xml"}
BEARER = {"Authorization": f"Bearer {OPS_TOKEN}"}


@pytest.fixture
def ops_settings(database_url: str, redis_url: str) -> Settings:
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        ops_token=OPS_TOKEN,
        stripe_api_key=STRIPE_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        meter_window_seconds=3600,
    )


@pytest.fixture
async def client(
    ops_settings: Settings, sessions: SessionFactory
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(ops_settings) as (_, client):
        yield client


def metric(html: str, name: str) -> str:
    """The text of the element marked `data-metric="name"`."""
    match = re.search(rf'data-metric="{re.escape(name)}"[^>]*>([^<]*)<', html)
    assert match, f"no data-metric={name!r} on the page"
    return match.group(1).strip()


JOB_DATA = {
    "organizationId": "6f1c8a52-3a0e-4a0c-9a43-1a3c2f0e9b11",
    "eventName": "active_sensors",
    "value": 1,
    "timestamp": 1_700_000_000,
}


async def fail_job(redis_url: str, job_id: str) -> None:
    """Add a one-attempt meter:report job and let a worker fail it."""
    fix_bullmq_block_timeouts()
    queue: Any = open_queue(redis_url, QueueNames.METER_REPORTING)

    async def refuse(job: Any, token: str) -> None:
        raise RuntimeError(f"Stripe refused {job.id}: No such customer")

    try:
        await queue.add(JobNames.METER_REPORT.value, JOB_DATA, {"jobId": job_id, "attempts": 1})
        worker = Worker(QueueNames.METER_REPORTING.value, refuse, {"connection": redis_url})
        try:
            for _ in range(200):
                if await queue.getJobState(job_id) == "failed":
                    break
                await asyncio.sleep(0.05)
        finally:
            await worker.close()
        assert await queue.getJobState(job_id) == "failed"
    finally:
        await queue.close()


async def job_state(redis_url: str, job_id: str) -> str:
    queue: Any = open_queue(redis_url, QueueNames.METER_REPORTING)
    try:
        return str(await queue.getJobState(job_id))
    finally:
        await queue.close()
