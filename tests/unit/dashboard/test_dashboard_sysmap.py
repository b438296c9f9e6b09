"""The system map laid out by Graphviz dot: direction of flow, no edge through a box, no
label over another, badges, links, escaping."""

from __future__ import annotations

import random
import re
import shutil

import pytest

from stalwart.dashboard import layout as layout_module
from stalwart.dashboard.flows import Flows, topic_group
from stalwart.dashboard.layout import Box, EdgePath, LayoutError, layout
from stalwart.dashboard.models import Availability
from stalwart.dashboard.sysmap import CHAR_WIDTH, MapGraph, build, render, spec

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz dot")


def _synthetic(services: int, seed: int = 7, stages: int = 5) -> MapGraph:
    """``services`` services in ``stages`` pipeline stages over three sites, each
    publishing one or two topics that one to three services of the next stage consume."""
    rng = random.Random(seed)
    names = [f"service-{i:02d}{'-long-name' * (i % 4 == 0)}" for i in range(services)]
    per_stage = max(1, services // stages)
    flows: Flows = {}
    for i, name in enumerate(names):
        following = names[(i // per_stage + 1) * per_stage :][:per_stage]
        for t in range(rng.randint(1, 2)):
            topic = f"work.{name}.out{t}"
            flows[(name, topic, "")] = (rng.randint(1, 5000), 0)
            for consumer in rng.sample(following, k=min(len(following), rng.randint(1, 3))):
                failed = rng.choice([0, 0, 3, 400])
                flows[(name, topic, consumer)] = (1000, failed)
    sites = {name: ("eu", "us", "ap")[i % 3] for i, name in enumerate(names)}
    status = {name: Availability.UP for name in names[: services - 2]}
    states = {names[1]: {"received": 1234, "dead": 3}}
    return build(flows, 900.0, status, sites, states)


def _bezier(points: list[tuple[float, float]], steps: int = 24) -> list[tuple[float, float]]:
    out = [points[0]]
    for i in range(0, len(points) - 3, 3):
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points[i : i + 4]
        for k in range(1, steps + 1):
            t = k / steps
            u = 1 - t
            out.append(
                (
                    u**3 * x0 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t**3 * x3,
                    u**3 * y0 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t**3 * y3,
                )
            )
    return out


def _inside(point: tuple[float, float], box: Box, margin: float = 1.0) -> bool:
    x, y = point
    return (
        box.x + margin < x < box.x + box.width - margin
        and box.y + margin < y < box.y + box.height - margin
    )


def _overlap(a: Box, b: Box) -> bool:
    return (
        a.x < b.x + b.width
        and b.x < a.x + a.width
        and a.y < b.y + b.height
        and b.y < a.y + a.height
    )


async def test_fifty_services_no_edge_crosses_a_box_and_no_labels_overlap() -> None:
    # Given 50 services over three sites and the topics between them
    graph = _synthetic(50)
    # When dot lays them out
    placed = await layout(spec(graph))
    # Then every hop has a path, and no path passes through a box other than its ends
    assert len(placed.edges) == len(graph.edges) > 100
    crossings = [
        (a, b, other)
        for (a, b), path in placed.edges.items()
        for point in _bezier(path.points)
        for other, box in placed.nodes.items()
        if other not in (a, b) and _inside(point, box)
    ]
    assert crossings == []
    # And no two boxes overlap, and each label fits inside its box
    boxes = list(placed.nodes.items())
    overlapping = [
        (a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1 :] if _overlap(ba, bb)
    ]
    assert overlapping == []
    for key, box in placed.nodes.items():
        assert len(graph.nodes[key].shown) * CHAR_WIDTH <= box.width

    # And the flow runs left to right: each publisher left of its topic, each topic left of
    # its consumers (apart from the rare edge dot must turn back to break a cycle)
    def centre(key: str) -> float:
        return placed.nodes[key].x + placed.nodes[key].width / 2

    backwards = [e for e in graph.edges if centre(e.source) >= centre(e.target)]
    assert len(backwards) <= len(graph.edges) // 20
    # And the three sites are clusters holding their services
    assert sorted(label for label, _ in placed.clusters) == ["ap", "eu", "us"]


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?[0-9.]+", text)]


async def test_fifty_services_drawn_no_edge_through_a_box_in_the_svg() -> None:
    # Given the SVG drawn for 50 services (what the browser shows)
    graph = _synthetic(50)
    svg = str(await render(graph))
    boxes = {
        name: Box(*(float(v) for v in (x, y, w, h)))
        for name, x, y, w, h in re.findall(
            r'data-(?:service|topic)="([^"]+)"><rect x="([0-9.]+)" y="([0-9.]+)" '
            r'width="([0-9.]+)" height="([0-9.]+)"',
            svg,
        )
    }
    paths = re.findall(r'd="(M[^"]+)" data-from="([^"]+)" data-to="([^"]+)"', svg)
    assert len(boxes) == len(graph.nodes) and len(paths) == len(graph.edges)
    # Then no drawn edge passes through a box other than its two ends
    crossings = []
    for d, source, target in paths:
        spline, _, tip = d.partition(" L")
        values = _numbers(spline.replace("M", " ").replace("C", " ").replace(",", " "))
        points = list(zip(values[::2], values[1::2], strict=True))
        tip_x, tip_y = _numbers(tip.replace(",", " "))
        drawn = [*_bezier(points), (tip_x, tip_y)]
        crossings += [
            (source, target, other)
            for point in drawn
            for other, box in boxes.items()
            if other not in (source, target) and _inside(point, box)
        ]
    assert crossings == []


async def test_map_svg_links_services_badges_queues_and_colours_failures() -> None:
    graph = _synthetic(6)
    svg = await render(graph)
    # Each service opens its page; topics are plain boxes
    assert svg.count('<a href="/services/') == 6
    assert 'href="/services/service-01"' in svg
    assert 'class="node topic" data-topic="work.service-00-long-name.out0"' in svg
    # The backlog and dead letters show as badges on their service
    assert "1.2k queued" in svg and "3 dead" in svg
    # Edges are coloured by failed share, wider for more traffic
    classes = set(re.findall(r'class="edge (\w+)"', svg))
    assert classes <= {"ok", "warn", "bad"} and "bad" in classes
    widths = [float(w) for w in re.findall(r'stroke-width="([0-9.]+)"', svg)]
    assert max(widths) > min(widths) >= 1.0


async def test_names_are_escaped_and_reply_topics_grouped() -> None:
    flows: Flows = {("<b>x</b>", topic_group("sys.reply.qa.12ab"), "qa/../../api"): (3, 1)}
    svg = await render(build(flows, 60.0, {}, {}, {}))
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    assert 'data-topic="sys.reply.*"' in svg
    assert 'href="/services/qa%2F..%2F..%2Fapi"' in svg
    assert "no services seen yet" in await render(build({}, 60.0, {}, {}, {}))


async def test_layout_is_cached_by_structure_and_a_missing_dot_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph = _synthetic(4, seed=1)
    first = await layout(spec(graph))
    # Same structure, other rates: no new dot run
    monkeypatch.setattr(layout_module, "DOT", "/nonexistent/dot")
    assert await layout(spec(graph)) is first
    # A new structure without dot: a clear error
    with pytest.raises(LayoutError, match="install it"):
        await layout(spec(_synthetic(5, seed=2)))
    assert isinstance(next(iter(first.edges.values())), EdgePath)
