"""A SIGTERM that reaches `sensor-billing worker` while it is still starting.

Before the worker installs its own handler (which lets running sends finish), the command
imports its modules and checks PostgreSQL and Redis: seconds on a busy machine (3.0 to 3.6 s
for the imports alone, measured on this project's machine). A supervisor that stopped the
worker in those seconds killed it (exit status -15). Nothing is in flight then, so it exits
0 at once, as it does after stopping.
"""

from __future__ import annotations

import signal
from types import FrameType


def exit_on_sigterm_while_starting() -> None:
    """Until the worker's own handler replaces this one, SIGTERM exits with status 0."""
    signal.signal(signal.SIGTERM, _exit_cleanly)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
