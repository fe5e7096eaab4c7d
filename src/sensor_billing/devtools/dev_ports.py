"""The ports `dev` served its embedded Redis and the stand-in on, kept for its next start.

They are otherwise random, so a restart would leave every exported REDIS_URL and
STRIPE_API_BASE pointing at nothing. The API's port is `--port`, fixed already.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sensor_billing.devtools.embedded import free_loopback_port, loopback_port_is_free

PORTS_FILE_NAME = "dev-ports.json"


def remembered_ports(data_dir: Path) -> dict[str, int]:
    """The last run's ports by service name; none when there was no run or the file is bad."""
    try:
        stored = json.loads((data_dir / PORTS_FILE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict):
        return {}
    return {
        str(name): port
        for name, port in stored.items()
        if isinstance(port, int) and 0 < port < 65536
    }


def remember_ports(data_dir: Path, ports: dict[str, int]) -> None:
    (data_dir / PORTS_FILE_NAME).write_text(json.dumps(ports, indent=2, sort_keys=True))


@dataclass(frozen=True)
class PortChoice:
    port: int
    # The last run's port, when it was taken and another had to be chosen.
    moved_from: int | None = None

    def note(self) -> str:
        if self.moved_from is None:
            return ""
        return f"  (port {self.moved_from} of the last run is taken: exports of it are stale)"


def choose_port(remembered: int | None) -> PortChoice:
    """The last run's port when it is free, else a free one (and which it replaces)."""
    if remembered is not None and loopback_port_is_free(remembered):
        return PortChoice(remembered)
    return PortChoice(free_loopback_port(), moved_from=remembered)
