"""Local network helpers for tests that start servers of their own."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ConnectionWitness:
    """A listening socket on 127.0.0.1 that nothing answers: point a client at `url`, and
    `connections()` says how many connections it tried (e.g. to show Stripe was not called)."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self._socket.setblocking(False)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._seen = 0

    def connections(self) -> int:
        while True:
            try:
                connection, _ = self._socket.accept()
            except BlockingIOError:
                return self._seen
            connection.close()
            self._seen += 1

    def close(self) -> None:
        self._socket.close()
