"""`--help` without a type placeholder on switches (`--demo`, `--json`, `--help` itself).

Typer (0.29 here) renders help with rich when rich is installed, and its options panel asks
every option for its type, switches included, so `--demo <bool>` read as if it took a value.
Its plain-text help already leaves the type out for flags (`TyperOption.get_help_record`);
this makes the rich panel do the same, for every command at once.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_original_display_type_rich = TyperOption.display_type_rich


def _display_type_unless_flag(self: TyperOption, ctx: Any) -> str | None:
    if self.is_flag or self.count:  # as the plain-text help decides
        return None
    return _original_display_type_rich(self, ctx)


def hide_flag_types() -> None:
    TyperOption.display_type_rich = _display_type_unless_flag  # type: ignore[method-assign]
