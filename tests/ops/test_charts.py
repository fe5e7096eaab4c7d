"""The server-drawn usage chart: buckets that fit, bars in time order and to scale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sensor_billing.ops.charts import MAX_BARS, bar_chart, bucket_size, nice_ceiling
from sensor_billing.ops.repository import UsagePoint

START = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_a_period_of_few_windows_gets_one_bar_per_window() -> None:
    assert bucket_size(START, START + 48 * HOUR, HOUR) == HOUR


def test_a_month_of_hourly_windows_is_put_in_whole_window_buckets_that_fit() -> None:
    bucket = bucket_size(START, START + timedelta(days=30), HOUR)
    assert bucket == 6 * HOUR
    assert timedelta(days=30) / bucket <= MAX_BARS


def test_the_scale_tops_at_one_two_or_five_times_a_power_of_ten() -> None:
    assert [nice_ceiling(n) for n in (0, 1, 3, 10, 11, 420, 5001)] == [1, 1, 5, 10, 20, 500, 10000]


def test_bars_sit_at_their_bucket_and_scale_to_the_top_value() -> None:
    points = [
        UsagePoint("temperature_readings", START, 1, 50),
        UsagePoint("temperature_readings", START + 3 * HOUR, 1, 100),
    ]
    chart = bar_chart("readings", points, start=START, end=START + 4 * HOUR, bucket=HOUR)

    first, second = chart.bars
    assert second.x > first.x
    assert second.height == 2 * first.height
    assert second.y + second.height == chart.plot_bottom
    assert [label.text for label in chart.y_labels] == ["0", "50", "100"]
