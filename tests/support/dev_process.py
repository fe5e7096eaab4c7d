"""Running `sensor-billing dev` (and other commands beside it) as separate processes."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

COMMAND = str(Path(sys.executable).parent / "sensor-billing")
PR_SET_PDEATHSIG = 1
# What dev takes from the environment when set; a newcomer's shell has none of them.
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "API_URL")


def die_with_parent() -> None:
    """A dev server left behind by a killed test run would hold ports and data: tie its life
    to the test process (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any service setting (no DATABASE_URL, REDIS_URL,
    STRIPE_*, METER_*, API_URL), plus `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in SERVICE_VARIABLES and not name.startswith(("STRIPE_", "METER_"))
    }
    return {**env, **extra}


@contextmanager
def open_folder(prefix: str) -> Iterator[Path]:
    """A throwaway folder others may enter. Not under pytest's tmp_path: its
    /tmp/pytest-of-root is closed to other users, and as root the embedded PostgreSQL runs as
    one (dev refuses such a folder)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        os.chmod(folder, 0o755)  # noqa: S103 - a throwaway folder, opened like the data dir
        yield Path(folder)


def start_dev(
    port: int,
    data_dir: Path | None,
    env: dict[str, str],
    log: Path,
    *extra: str,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """dev on `port`; without `data_dir` it uses its default, `.data` in `cwd`."""
    folder = ["--data-dir", str(data_dir)] if data_dir is not None else []
    with log.open("ab") as out:
        return subprocess.Popen(
            [COMMAND, "dev", "--port", str(port), *folder, *extra],
            env=env,
            cwd=cwd or log.parent,  # no developer .env
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
