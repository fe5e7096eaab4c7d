"""Bar charts drawn on the server: geometry here, the SVG markup in `templates/_chart.html`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sensor_billing.ops.repository import UsagePoint

# A chart this wide shows at most this many bars; more windows are put in buckets.
MAX_BARS = 120
WIDTH = 720
HEIGHT = 180
LEFT = 56  # room for the y-axis labels
BOTTOM = 22  # room for the x-axis labels
TOP = 8


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    start: datetime
    windows: int
    value: int


@dataclass(frozen=True, slots=True)
class AxisLabel:
    position: float
    text: str


@dataclass(frozen=True, slots=True)
class BarChart:
    title: str
    width: int
    height: int
    plot_left: int
    plot_bottom: float
    bars: list[Bar]
    y_labels: list[AxisLabel]
    x_labels: list[AxisLabel]


def bucket_size(start: datetime, end: datetime, window: timedelta) -> timedelta:
    """Whole windows per bar, so a period fits in `MAX_BARS` bars."""
    windows = max(math.ceil((end - start) / window), 1)
    return window * max(math.ceil(windows / MAX_BARS), 1)


def nice_ceiling(value: int) -> int:
    """1, 2 or 5 times a power of ten, at least `value` (at least 1)."""
    if value <= 1:
        return 1
    magnitude: int = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def bar_chart(
    title: str, points: list[UsagePoint], *, start: datetime, end: datetime, bucket: timedelta
) -> BarChart:
    slots = max(math.ceil((end - start) / bucket), 1)
    plot_width = WIDTH - LEFT - 4
    plot_height = HEIGHT - TOP - BOTTOM
    slot_width = plot_width / slots
    top = nice_ceiling(max((point.value for point in points), default=0))
    bars = []
    for point in points:
        index = int((point.bucket_start - start) / bucket)
        height = plot_height * point.value / top
        bars.append(
            Bar(
                x=LEFT + index * slot_width + slot_width * 0.1,
                y=TOP + plot_height - height,
                width=max(slot_width * 0.8, 1.0),
                height=height,
                start=point.bucket_start,
                windows=point.windows,
                value=point.value,
            )
        )
    y_labels = [
        AxisLabel(TOP + plot_height * (1 - share), f"{top * share:,.10g}") for share in (0, 0.5, 1)
    ]
    x_labels = [
        AxisLabel(LEFT + plot_width * share, (start + (end - start) * share).strftime("%b %d"))
        for share in (0, 0.5, 1)
    ]
    return BarChart(
        title=title,
        width=WIDTH,
        height=HEIGHT,
        plot_left=LEFT,
        plot_bottom=TOP + plot_height,
        bars=bars,
        y_labels=y_labels,
        x_labels=x_labels,
    )
