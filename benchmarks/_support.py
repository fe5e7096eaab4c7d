"""Shared bits for benchmarks: throwaway databases, free ports, a lean HTTP load generator,
the CPU time and peak memory of the processes measured.

The load generator writes pre-built HTTP/1.1 requests on keep-alive connections with raw
asyncio streams, so the client costs little CPU next to the server it measures (both share
this machine's cores).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

ADMIN_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(prefix: str) -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    connection = await asyncpg.connect(dsn(ADMIN_DATABASE_URL))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(ADMIN_DATABASE_URL).set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str) -> None:
    connection = await asyncpg.connect(dsn(ADMIN_DATABASE_URL))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await connection.close()


async def timed_execute(
    connection: asyncpg.Connection, label: str, sql: str, *args: object
) -> None:
    """Run one data-generation statement and print how long it took."""
    started = time.perf_counter()
    await connection.execute(sql, *args)
    print(f"  {label:<52} {time.perf_counter() - started:>7.1f} s", flush=True)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time a running process has used (Linux /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


# Issue 16: every API and worker process a benchmark measured stays under this.
RSS_TARGET_MB = 200.0


def _status_mb(field_name: str, pid: int | None) -> float:
    status = Path(f"/proc/{pid if pid is not None else 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field_name} in /proc/{pid or 'self'}/status")


def peak_rss_mb(pid: int | None = None) -> float:
    """The peak resident set size (VmHWM) of a running process, this one when `pid` is None,
    in MiB. Read it before the process exits."""
    return _status_mb("VmHWM", pid)


def reset_peak_rss() -> float:
    """Start this process's peak RSS afresh from its RSS now (Linux: clear_refs 5), so a
    benchmark that runs the service's code in-process counts what the measured part used,
    not its own data generation; returns that RSS (MiB)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS", None)


@dataclass
class PeakRss:
    """The peak RSS of each API and worker process a benchmark measured, printed beside its
    results with the target."""

    readings: dict[str, float] = field(default_factory=dict)

    def read(self, name: str, pid: int | None = None) -> None:
        self.readings[name] = peak_rss_mb(pid)

    def within_target(self) -> bool:
        return all(mb < RSS_TARGET_MB for mb in self.readings.values())

    def print(self) -> None:
        verdict = "meets" if self.within_target() else "MISSES"
        print(f"\n  peak RSS (VmHWM), target under {RSS_TARGET_MB:.0f} MB each: {verdict}")
        for name, mb in self.readings.items():
            print(f"    {name:<60} {mb:>7.1f} MB")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[int, int]
    latencies_ms: list[float]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def p99_ms(self) -> float:
        return statistics.quantiles(self.latencies_ms, n=100)[98] if self.latencies_ms else 0.0


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    await reader.readexactly(length)
    return status


async def drive(port: int, requests: Sequence[bytes], connections: int) -> LoadResult:
    """Send every request once over `connections` keep-alive connections; time the whole."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    statuses: dict[int, int] = {}
    latencies: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not queue.empty():
                request = queue.get_nowait()
                sent = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                latencies.append((time.perf_counter() - sent) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return LoadResult(len(requests), time.perf_counter() - started, statuses, latencies)


def http_post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body
