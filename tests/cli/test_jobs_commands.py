"""`sensor-billing jobs ...` against real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bullmq import Worker

from sensor_billing.jobs.connection import fix_bullmq_block_timeouts, open_queue
from sensor_billing.jobs.registry import JobNames, QueueNames
from tests.cli.conftest import UNREACHABLE_REDIS_URL, run_cli

DATA = {"organizationId": "6f1c8a52-3a0e-4a0c-9a43-1a3c2f0e9b11", "eventName": "active_sensors"}


@pytest.fixture
async def queue(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    queue = open_queue(redis_url, QueueNames.METER_REPORTING)
    yield queue
    await queue.close()


async def fail_jobs(redis_url: str, queue: Any, *job_ids: str) -> None:
    """Add one-attempt jobs and let a worker fail each of them."""
    fix_bullmq_block_timeouts()

    async def refuse(job: Any, token: str) -> None:
        raise RuntimeError(f"Stripe refused {job.id}")

    for job_id in job_ids:
        await queue.add(JobNames.METER_REPORT.value, {**DATA, "value": 1}, {"jobId": job_id})
    worker = Worker(QueueNames.METER_REPORTING.value, refuse, {"connection": redis_url})
    try:
        for _ in range(200):
            if (await queue.getJobCounts("failed"))["failed"] == len(job_ids):
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.close()
    assert (await queue.getJobCounts("failed"))["failed"] == len(job_ids)


async def test_jobs_counts_shows_every_queue_and_state(redis_url: str, queue: Any) -> None:
    await queue.add(JobNames.METER_REPORT.value, {**DATA, "value": 1}, {"jobId": "w1"})
    await queue.add(JobNames.METER_REPORT.value, {**DATA, "value": 2}, {"delay": 60_000})

    outcome = run_cli("jobs", "counts", "--json")

    assert outcome.exit_code == 0, outcome.stderr
    counts = json.loads(outcome.stdout)
    assert set(counts) == {name.value for name in QueueNames}
    assert counts["meter-reporting"] == {
        "waiting": 1,
        "active": 0,
        "delayed": 1,
        "completed": 0,
        "failed": 0,
    }
    assert counts["sms-notifications"]["waiting"] == 0


async def test_jobs_counts_prints_a_table(queue: Any) -> None:
    outcome = run_cli("jobs", "counts")
    assert outcome.exit_code == 0, outcome.stderr
    assert "meter-reporting" in outcome.stdout
    assert "completed" in outcome.stdout


async def test_jobs_failed_lists_reason_and_attempts(redis_url: str, queue: Any) -> None:
    await fail_jobs(redis_url, queue, "sb.doomed")

    outcome = run_cli("jobs", "failed", "--json")

    assert outcome.exit_code == 0, outcome.stderr
    [job] = json.loads(outcome.stdout)
    assert job["queue"] == "meter-reporting"
    assert job["id"] == "sb.doomed"
    assert job["name"] == "meter:report"
    assert job["attemptsMade"] == 1
    assert job["failedReason"] == "Stripe refused sb.doomed"
    assert job["failedAt"] is not None
    table = run_cli("jobs", "failed")
    assert "sb.doomed" in table.stdout
    assert "Stripe refused sb.doomed" in table.stdout


async def test_jobs_failed_prints_a_long_id_and_reason_whole_off_a_terminal(
    redis_url: str, queue: Any
) -> None:
    job_id = "sb." + "7" * 36 + ".temperature_readings.1796410260"
    await fail_jobs(redis_url, queue, job_id)

    outcome = run_cli("jobs", "failed")

    assert outcome.exit_code == 0, outcome.stderr
    assert job_id in outcome.stdout
    assert f"Stripe refused {job_id}" in outcome.stdout
    assert "…" not in outcome.stdout


async def test_jobs_retry_moves_one_failed_job_back_to_waiting(redis_url: str, queue: Any) -> None:
    await fail_jobs(redis_url, queue, "sb.one", "sb.two")

    outcome = run_cli("jobs", "retry", "sb.one")

    assert outcome.exit_code == 0, outcome.stderr
    assert "sb.one" in outcome.stdout
    assert await queue.getJobState("sb.one") == "waiting"
    assert await queue.getJobState("sb.two") == "failed"
    assert (await queue.getJob("sb.one")).attemptsMade == 0


async def test_jobs_retry_all_moves_every_failed_job(redis_url: str, queue: Any) -> None:
    await fail_jobs(redis_url, queue, "sb.one", "sb.two")

    outcome = run_cli("jobs", "retry", "--all")

    assert outcome.exit_code == 0, outcome.stderr
    assert "retried 2 failed job(s)" in outcome.stdout
    assert await queue.getJobCounts("failed", "waiting") == {"failed": 0, "waiting": 2}


async def test_jobs_retry_of_a_missing_job_exits_1_without_traceback(queue: Any) -> None:
    outcome = run_cli("jobs", "retry", "sb.gone")
    assert outcome.exit_code == 1
    assert "no job 'sb.gone' in any queue" in outcome.stderr
    assert "Traceback" not in outcome.stderr + outcome.stdout


async def test_jobs_retry_of_a_job_that_has_not_failed_exits_1(queue: Any) -> None:
    await queue.add(JobNames.METER_REPORT.value, {**DATA, "value": 1}, {"jobId": "sb.waiting"})
    outcome = run_cli("jobs", "retry", "sb.waiting")
    assert outcome.exit_code == 1
    assert "is waiting, not failed" in outcome.stderr


@pytest.mark.parametrize("args", [[], ["sb.one", "--all"]])
def test_jobs_retry_needs_exactly_one_of_job_id_and_all(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", UNREACHABLE_REDIS_URL)  # refused before Redis is asked
    outcome = run_cli("jobs", "retry", *args)
    assert outcome.exit_code == 2
    assert "give either a JOB_ID or --all" in outcome.stderr


@pytest.mark.parametrize("command", [["counts"], ["failed"], ["retry", "--all"]])
def test_jobs_commands_exit_3_when_redis_does_not_answer(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", UNREACHABLE_REDIS_URL)
    outcome = run_cli("jobs", *command)
    assert outcome.exit_code == 3
    assert "Redis at REDIS_URL is not usable" in outcome.stderr
