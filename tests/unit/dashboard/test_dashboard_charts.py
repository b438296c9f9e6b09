"""Server-side SVG charts: escaped labels, scales, empty states."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from stalwart.dashboard.charts import line_chart, service_of, sparkline, system_map
from stalwart.dashboard.models import Availability, Edge, TopicSeries


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


def test_system_map_sizes_edges_by_rate_and_colours_nodes_by_availability() -> None:
    # Given a fast and a slow flow, an up, a down and a sender-only service
    nodes = {"qa": Availability.UP, "pipeline": Availability.DOWN}
    edges = [
        Edge(source="dispatcher", target="pipeline", count=1000, rate=10.0),
        Edge(source="pipeline", target="qa", count=10, rate=0.1),
    ]
    svg = system_map(nodes, edges)
    # Then each service is a node with its availability as class
    assert 'class="node up" data-service="qa"' in svg
    assert 'class="node down" data-service="pipeline"' in svg
    assert 'class="node external" data-service="dispatcher"' in svg
    # And the faster flow has the wider arrow
    widths = [float(w) for w in re.findall(r'class="edge" stroke-width="([0-9.]+)"', svg)]
    assert widths[0] > widths[1] >= 1.0


def test_system_map_escapes_names_and_handles_self_loops_and_emptiness() -> None:
    loop = Edge(source="<b>x</b>", target="<b>x</b>", count=1, rate=1.0)
    svg = system_map({"<b>x</b>": None}, [loop])
    assert "<b>" not in svg and "<path" in svg
    assert "no services" in system_map({}, [])


def test_sparkline_and_sender_service() -> None:
    assert "<polyline" in sparkline([1.0, 3.0, 2.0])
    assert "<polyline" not in sparkline([1.0])
    assert service_of("qa@eu/host-1") == "qa"
