"""`sensor-billing jobs ...`: the bullmq queues, for an operator."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.table import Table

from sensor_billing.cli.errors import EXIT_FAILURE, EXIT_USAGE, reports_errors, stderr
from sensor_billing.cli.output import stdout_console
from sensor_billing.errors import QueueUnavailableError
from sensor_billing.jobs import admin
from sensor_billing.jobs.health import redis_problem
from sensor_billing.settings import get_settings

app = typer.Typer(help="Job queues: counts, failed jobs, retries.", no_args_is_help=True)
console = stdout_console()

JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")


def require_redis() -> str:
    url = get_settings().redis_url
    problem = redis_problem(url)
    if problem:
        raise QueueUnavailableError(f"Redis at REDIS_URL is not usable: {problem}")
    return url


@app.command()
@reports_errors
def counts(as_json: bool = JSON_OPTION) -> None:
    """Jobs per queue and state (waiting, active, delayed, completed, failed)."""
    per_queue = asyncio.run(admin.job_counts(require_redis()))
    if as_json:
        typer.echo(json.dumps(per_queue, indent=2))
        return
    table = Table("queue", *admin.JOB_STATES)
    for queue, per_state in per_queue.items():
        table.add_row(queue, *(str(per_state[state]) for state in admin.JOB_STATES))
    console.print(table)


@app.command()
@reports_errors
def failed(as_json: bool = JSON_OPTION) -> None:
    """Failed jobs of every queue: id, attempts, reason, when."""
    jobs = asyncio.run(admin.failed_jobs(require_redis()))
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "queue": job.queue,
                        "id": job.id,
                        "name": job.name,
                        "attemptsMade": job.attempts_made,
                        "failedReason": job.failed_reason,
                        "failedAt": job.failed_at.isoformat() if job.failed_at else None,
                        "data": job.data,
                    }
                    for job in jobs
                ],
                indent=2,
            )
        )
        return
    if not jobs:
        console.print("no failed jobs")
        return
    table = Table("queue", "job id", "name", "attempts", "failed at", "reason")
    for job in jobs:
        table.add_row(
            job.queue,
            job.id,
            job.name,
            str(job.attempts_made),
            job.failed_at.isoformat(timespec="seconds") if job.failed_at else "",
            job.failed_reason,
        )
    console.print(table)


@app.command()
@reports_errors
def retry(
    job_id: str | None = typer.Argument(None, help="Id of the failed job to retry."),
    retry_all: bool = typer.Option(False, "--all", help="Retry every failed job."),
) -> None:
    """Move a failed job (or, with --all, every failed job) back to waiting."""
    if retry_all == (job_id is not None):
        stderr.print("[bold red]error:[/] give either a JOB_ID or --all", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    url = require_redis()
    if job_id is None:
        retried = asyncio.run(admin.retry_all_failed(url))
        console.print(
            f"retried {sum(retried.values())} failed job(s): "
            + ", ".join(f"{queue} {count}" for queue, count in retried.items())
        )
        return
    result = asyncio.run(admin.retry_job(url, job_id))
    if result.outcome is admin.RetryOutcome.RETRIED:
        console.print(f"job {job_id} ({result.queue}) moved back to waiting")
        return
    if result.outcome is admin.RetryOutcome.NOT_FOUND:
        message = f"no job {job_id!r} in any queue (removed, or never existed)"
    else:
        message = f"job {job_id!r} ({result.queue}) is {result.state}, not failed"
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_FAILURE)
