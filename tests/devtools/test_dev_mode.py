"""`sensor-billing dev`: the whole service from nothing, stopped cleanly, one per data folder."""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sensor_billing.webhooks.signature import sign
from tests.support.net import free_port

COMMAND = str(Path(sys.executable).parent / "sensor-billing")
WEBHOOK_SECRET = "whsec_dev_mode_test_secret"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A dev server left behind by a killed test run would hold ports and data: tie its life
    to the test process (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: its /tmp/pytest-of-root is closed to other users, and as
    # root the embedded PostgreSQL runs as one (dev refuses such a folder).
    with tempfile.TemporaryDirectory(prefix="sb-dev-") as folder:
        os.chmod(folder, 0o755)  # noqa: S103 - a throwaway folder, opened like the data dir
        yield Path(folder) / "data"


@pytest.fixture
def dev_env(tmp_path: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_URL", "REDIS_URL", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"}
    }
    # 10-second windows closed 1 s after they end: usage reaches the stand-in within ~20 s.
    return {
        **env,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "METER_WINDOW_SECONDS": "10",
        "METER_GRACE_SECONDS": "1",
        "METER_CLOSE_INTERVAL_SECONDS": "10",
    }


def start_dev(
    port: int, data_dir: Path, env: dict[str, str], log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [COMMAND, "dev", "--port", str(port), "--data-dir", str(data_dir), *extra],
            env=env,
            cwd=log.parent,  # no developer .env
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )


def wait_until_ready(process: subprocess.Popen[bytes], api: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"dev exited early:\n{log.read_text()}"
        try:
            ready = httpx.get(f"{api}/readyz", timeout=1).status_code == 200
            if ready and "sensor-billing dev is up" in log.read_text():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"dev never became ready:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None
    return process.returncode


def processes_mentioning(*needles: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(needle in cmdline for needle in needles):
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_dev_runs_the_whole_loop_from_nothing_and_stops_without_leftovers(
    data_dir: Path, dev_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    log = tmp_path / "dev.log"
    process = start_dev(port, data_dir, dev_env, log, "--demo")
    redis_port = ""
    try:
        wait_until_ready(process, api, log)
        output = log.read_text()
        standin = re.search(r"Stripe stand-in\s+(http://\S+)", output)
        redis = re.search(r"Redis\s+redis://127\.0\.0\.1:(\d+)/", output)
        assert standin, output
        assert redis, output
        redis_port = redis.group(1)

        body = json.dumps(
            {
                "id": "evt_dev_mode_1",
                "object": "event",
                "type": "customer.created",
                "created": int(time.time()),
                "data": {"object": {"id": "cus_dev", "object": "customer"}},
            }
        ).encode()
        answer = httpx.post(
            f"{api}/webhooks/stripe",
            content=body,
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": sign(WEBHOOK_SECRET, int(time.time()), body),
            },
        )
        assert answer.status_code == 200, answer.text

        deadline = time.monotonic() + 40
        events: list[object] = []
        while not events and time.monotonic() < deadline:
            time.sleep(0.5)
            events = httpx.get(f"{standin.group(1)}/_standin/state").json()["events"]
        assert events, f"no meter event reached the stand-in:\n{log.read_text()}"
    finally:
        code = stop(process)
    assert code == 0, log.read_text()
    leftovers = processes_mentioning(str(data_dir), f"127.0.0.1:{redis_port or 'none'}")
    assert not leftovers, leftovers


def test_a_second_dev_on_the_same_data_folder_is_refused(
    data_dir: Path, dev_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "dev.log"
    port = free_port()
    first = start_dev(port, data_dir, dev_env, log)
    try:
        wait_until_ready(first, f"http://127.0.0.1:{port}", log)
        second = subprocess.run(
            [COMMAND, "dev", "--port", str(free_port()), "--data-dir", str(data_dir)],
            env=dev_env,
            cwd=tmp_path,
            capture_output=True,
            timeout=30,
            preexec_fn=die_with_parent,
        )
    finally:
        assert stop(first) == 0, log.read_text()
    assert second.returncode != 0
    assert b"in use by another sensor-billing dev" in second.stderr


def test_a_busy_port_is_refused_with_exit_2_before_anything_starts(
    data_dir: Path, dev_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [COMMAND, "dev", "--port", str(port), "--data-dir", str(data_dir)],
            env=dev_env,
            cwd=tmp_path,
            capture_output=True,
            timeout=30,
            preexec_fn=die_with_parent,
        )
    assert result.returncode == 2
    assert f"port {port}".encode() in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not data_dir.exists()  # nothing was started or created
