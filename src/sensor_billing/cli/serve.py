"""`sensor-billing serve`: the HTTP API under uvicorn."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import typer
import uvicorn

from sensor_billing.cli.errors import reports_errors
from sensor_billing.listen import bind_api_socket
from sensor_billing.logs import configure_logging
from sensor_billing.observability.scrape import MULTIPROC_DIR_VARIABLE
from sensor_billing.settings import get_settings

WORKER_HEALTHCHECK_SECONDS = 30


def share_metrics_between_workers() -> None:
    """Each worker process counts in files under one folder, so `/metrics` from any of them
    shows the whole API's counts (without this a scrape sees one worker's share)."""
    directory = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if directory:
        # Counters left by an earlier run would be added to this one's.
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
    else:
        directory = tempfile.mkdtemp(prefix="sensor-billing-metrics-")
    os.environ[MULTIPROC_DIR_VARIABLE] = directory


@reports_errors
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (each a full API replica)."),
) -> None:
    """Run the API: POST /webhooks/stripe, GET /healthz, /readyz, /metrics (and /ops)."""
    settings = get_settings()  # a malformed setting stops here, before the port is taken
    # uvicorn exits 3 on a busy port, the code this CLI keeps for PostgreSQL or Redis being
    # unavailable: refuse it here first, as `dev` does (exit 2). uvicorn binds it right after.
    bind_api_socket(host, port).close()
    configure_logging(settings.log_level, settings.log_format)
    if workers > 1:
        share_metrics_between_workers()
    uvicorn.run(
        "sensor_billing.app:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        # uvicorn's own lines go through our handler, so LOG_FORMAT=json covers them too.
        log_config=None,
        # uvicorn restarts a worker process that does not answer its supervisor within this
        # time, start-up included; its default (5 s) is shorter than the imports take on a
        # loaded 2-core host, where the workers then restarted each other forever.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )
