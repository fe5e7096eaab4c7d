"""`sensor-billing serve` as a process: with LOG_FORMAT=json every line it writes is JSON,
uvicorn's own lines included, in each worker process; with several workers `/metrics` counts
what all of them did."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sensor_billing.observability.scrape import MULTIPROC_DIR_VARIABLE
from tests.support.net import free_port

COMMAND = str(Path(sys.executable).parent / "sensor-billing")
DELIVERIES = 40


def wait_until_healthy(port: int, server: subprocess.Popen[bytes], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"serve exited early with {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve never answered /healthz")


@pytest.mark.parametrize("workers", [1, 2])
def test_every_worker_logs_json_and_metrics_count_all_workers(
    workers: int, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **{name: value for name, value in os.environ.items() if name != MULTIPROC_DIR_VARIABLE},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOG_FORMAT": "json",
        "STRIPE_WEBHOOK_SECRET": "whsec_never_logged",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [COMMAND, "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_healthy(port, server, within=30)
            # /healthz answered from one worker; the others may still be starting.
            deadline = time.monotonic() + 30
            while log.read_text().count("Application startup complete") < workers:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            for _ in range(DELIVERIES):  # a new connection each, so both workers get some
                refused = httpx.post(f"http://127.0.0.1:{port}/webhooks/stripe", content=b"{}")
                assert refused.status_code == 415
            # Whichever worker answers the scrape, it counts every worker's deliveries.
            seen = {rejected_deliveries(port) for _ in range(6)}
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)

    lines = [line for line in log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # any text line fails here
    messages = [(entry["logger"], entry["message"]) for entry in entries]
    started = [
        m
        for logger, m in messages
        if logger == "uvicorn.error" and m == "Application startup complete."
    ]
    assert len(started) == workers, messages
    assert any(logger == "sensor_billing.webhooks" for logger, _ in messages), messages
    assert "whsec_never_logged" not in log.read_text()
    assert seen == {DELIVERIES}
    # Unset, `serve` keeps the counts of several workers in a temporary folder of its own.
    assert not list(tmp_path.parent.glob("*.db"))
    assert not list(Path.cwd().glob("*.db"))
    answered_by = {e["pid"] for e in entries if e["logger"] == "sensor_billing.webhooks"}
    assert len(answered_by) == workers  # so the count above spans processes


def rejected_deliveries(port: int) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('sensor_billing_webhook_deliveries_total{outcome="rejected"')
    )


def test_a_busy_port_is_refused_in_one_line_with_exit_2() -> None:
    """uvicorn alone exits 3 on a busy port, the code the CLI keeps for PostgreSQL or Redis
    being unavailable."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [COMMAND, "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "LOG_FORMAT": "text"},
        )
    assert result.returncode == 2, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr
