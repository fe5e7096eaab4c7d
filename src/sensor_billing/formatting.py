"""How the CLI and the /ops pages write values for people."""

from __future__ import annotations


def format_age(seconds: float) -> str:
    """A duration in its two largest units: '2d 3h', '4h 10m', '5m 0s' (negative: '0m 0s')."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"
