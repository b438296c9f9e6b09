"""Server-side SVG charts: escaped labels, scales, empty states."""

from __future__ import annotations

from datetime import UTC, datetime

from stalwart.dashboard.charts import line_chart, service_of, sparkline
from stalwart.dashboard.models import TopicSeries


def test_line_chart_draws_one_line_per_topic_and_sums_the_rest() -> None:
    # Given 8 topics
    series = [TopicSeries(topic=f"t.{i}", counts=[i, i * 2, i]) for i in range(8)]
    # When charting the top 3
    svg = line_chart(series, bucket=10.0, top=3, start=datetime(2026, 1, 1, tzinfo=UTC))
    # Then 3 lines plus "other", the axis tops at a round rate, times label the x axis
    assert svg.count("<polyline") == 4
    assert "<title>other</title>" in svg
    assert ">2<" in svg  # peak 14/10 = 1.4 msg/s -> axis max 2
    assert "00:00" in svg


def test_line_chart_without_data_says_so() -> None:
    assert "no traffic" in line_chart([], bucket=5.0)


def test_chart_labels_are_escaped() -> None:
    svg = line_chart([TopicSeries(topic="<script>x</script>", counts=[1, 2])], bucket=1.0)
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_sparkline_and_sender_service() -> None:
    assert "<polyline" in sparkline([1.0, 3.0, 2.0])
    assert "<polyline" not in sparkline([1.0])
    assert service_of("qa@eu/host-1") == "qa"
