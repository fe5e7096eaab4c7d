"""`sensor-billing worker`: report usage to Stripe, close windows on a schedule."""

from __future__ import annotations

import asyncio
import signal

import typer

from sensor_billing.cli.errors import reports_errors
from sensor_billing.db.health import require_database
from sensor_billing.errors import QueueUnavailableError
from sensor_billing.jobs.health import redis_problem
from sensor_billing.jobs.worker import run_worker
from sensor_billing.logs import configure_logging
from sensor_billing.settings import MAX_WORKER_CONCURRENCY, get_settings


@reports_errors
def worker(
    concurrency: int = typer.Option(
        0,
        min=0,
        max=MAX_WORKER_CONCURRENCY,
        help="Jobs in flight at once (0: METER_WORKER_CONCURRENCY).",
    ),
) -> None:
    """Run the meter-reporting worker until SIGTERM or Ctrl-C (running sends finish first)."""
    settings = get_settings()
    if concurrency:
        settings = settings.model_copy(update={"meter_worker_concurrency": concurrency})
    configure_logging(settings.log_level, settings.log_format)
    require_database(settings.database_url)
    problem = redis_problem(settings.redis_url)
    if problem:
        raise QueueUnavailableError(f"Redis at REDIS_URL is not usable: {problem}")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_worker(settings, stop)

    asyncio.run(main())
