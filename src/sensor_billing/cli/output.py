"""Where the commands print: one console factory, so output survives a pipe.

Rich sizes its output to the terminal, and without one (a pipe, a file, `less`) to the
terminal on stderr or 80 columns: tables then lose the ends of their cells (`2026-…`,
`organ…`). Off a terminal these consoles are as wide as their content instead, so a table
prints whole and `grep`, `cut` or a file get every value; on a terminal nothing changes.
"""

from __future__ import annotations

from rich.console import Console, ConsoleDimensions

# Wider than any row the commands print; rich does not pad lines to the width.
UNBOUNDED_WIDTH = 100_000


class PipeFriendlyConsole(Console):
    @property
    def size(self) -> ConsoleDimensions:
        dimensions = super().size
        # Decided at each print, not at import: the stream may change (tests swap stdout).
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(UNBOUNDED_WIDTH, dimensions.height)
        return dimensions

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


def stdout_console() -> Console:
    """The console a command prints its results on (stdout)."""
    return PipeFriendlyConsole()


def stderr_console() -> Console:
    """The console for errors and notes (stderr), so stdout stays clean for pipes and --json."""
    return PipeFriendlyConsole(stderr=True)
