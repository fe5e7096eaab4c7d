"""Taking the API's TCP port: a busy port is refused with a message (exit 2), before anything
starts, by `dev` (which keeps the socket) and `serve` (which checks, then lets uvicorn bind)."""

from __future__ import annotations

import errno
import socket

from sensor_billing.errors import ConfigurationError, PortInUseError


def bind_api_socket(host: str, port: int) -> socket.socket:
    """Take the API port now, before anything starts, so a busy port costs nothing."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is already in use (choose another with --port)"
            ) from None
        raise ConfigurationError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(2048)
    return sock
