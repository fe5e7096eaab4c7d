"""What `dev` prints once it is up, and the settings behind each line, from one list.

Each line may carry the settings a process needs to use what it names (by environment
variable): the same entries give the printed banner and `dev-services.json`
(`dev_services.py`), so the CLI reads exactly what dev printed. To show something new, add a
line; to let the CLI use it, give the line its settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BannerLine:
    label: str
    text: str
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Banner:
    title: str
    lines: list[BannerLine] = field(default_factory=list)

    def add(self, label: str, text: str, settings: Mapping[str, str] | None = None) -> None:
        self.lines.append(BannerLine(label, text, dict(settings or {})))

    def rendered(self) -> list[str]:
        width = max((len(line.label) for line in self.lines), default=0) + 2
        return [self.title, *(f"  {line.label:<{width}}{line.text}" for line in self.lines)]

    def settings(self) -> dict[str, str]:
        return {name: value for line in self.lines for name, value in line.settings.items()}
