"""Running the stand-in: in a background thread for tests, or in the foreground for a shell."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import uvicorn

from .app import create_app
from .config import StandinConfig
from .fault_delivery import HideInjectedDrops
from .faults import FaultPlan
from .state import StandinState

DEFAULT_API_KEY = "sk_test_standin"
_STARTUP_TIMEOUT_SECONDS = 10.0
_THREAD_NAME = "stripe-standin"


class HideThreadedLifecycle(logging.Filter):
    """uvicorn logs every server's start and stop lines under one logger, `uvicorn.error`,
    with the process id: in a process that serves its own API too (`dev`), the stand-in
    thread's "Shutting down" and "Finished server process [pid]" read as the API's, twice.
    The stand-in thread keeps its warnings and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.threadName != _THREAD_NAME


def _add_filter_once(filter_: logging.Filter) -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, type(filter_)) for f in logger.filters):
        logger.addFilter(filter_)


def _hide_injected_drops() -> None:
    _add_filter_once(HideInjectedDrops())


def uvicorn_config(state: StandinState, *, log_level: str = "warning") -> uvicorn.Config:
    config = uvicorn.Config(
        create_app(state),
        log_config=None,  # leave the host process's logging set-up alone
        log_level=log_level,
        access_log=False,
        lifespan="off",
        # Injected timeouts hold requests open; do not let them hold up a stop.
        timeout_graceful_shutdown=1,
    )
    _hide_injected_drops()
    return config


class RunningStandin:
    """A stand-in served by uvicorn on a background thread; use as a context manager."""

    def __init__(
        self, url: str, state: StandinState, server: uvicorn.Server, thread: threading.Thread
    ) -> None:
        self.url = url
        self.state = state
        self._server = server
        self._thread = thread

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def run_in_thread(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    api_keys: Iterable[str] = (DEFAULT_API_KEY,),
    state: StandinState | None = None,
    config: StandinConfig | None = None,
    faults: FaultPlan | None = None,
) -> RunningStandin:
    """Start serving on `host:port` (0 = a free port) and return once it accepts connections."""
    state = state or StandinState(api_keys, config=config, faults=faults)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(state))
    _add_filter_once(HideThreadedLifecycle())
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=_THREAD_NAME, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the Stripe stand-in did not start")
        time.sleep(0.01)
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    return RunningStandin(f"http://{url_host}:{bound_port}", state, server, thread)
