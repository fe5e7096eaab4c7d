"""Running a command as a person runs it from a terminal: an 80-column pseudo-terminal on
stdin and stderr, and stdout either a pipe (`| less`, `> file`) or that terminal too."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import struct
import subprocess
import termios
from pathlib import Path

TERMINAL_COLUMNS = 80


def run_in_terminal(
    args: list[str], *, env: dict[str, str], cwd: Path, stdout_to_terminal: bool = False
) -> tuple[int, str]:
    """Exit code and what the command wrote to stdout."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 25, TERMINAL_COLUMNS, 0, 0))
    try:
        process = subprocess.run(
            args,
            env=env,
            cwd=cwd,
            stdin=follower,
            stdout=follower if stdout_to_terminal else subprocess.PIPE,
            stderr=follower,
            timeout=60,
            check=False,
        )
        os.close(follower)
        follower = -1
        out = process.stdout.decode() if process.stdout is not None else _drain(leader)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    return process.returncode, out


def _drain(leader: int) -> str:
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: every writer is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    with contextlib.suppress(UnicodeDecodeError):
        return b"".join(chunks).decode().replace("\r\n", "\n")
    return b"".join(chunks).decode(errors="replace")
