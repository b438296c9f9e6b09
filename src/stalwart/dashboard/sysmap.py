"""The system map: publisher service -> topic -> consuming service, laid out by ``dot``.

Left to right in the direction of flow, services grouped by site, edge
width by rate and colour by error rate, badges for backlog and dead
letters; a service opens its own page. Boxes are sized from their labels
before layout (labels longer than a box holds are cut, the full text is in
the tooltip), so what ``dot`` keeps apart, the labels keep apart too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from markupsafe import Markup, escape

from stalwart.dashboard.flows import Flows
from stalwart.dashboard.layout import EdgePath, GraphSpec, Layout, layout
from stalwart.dashboard.models import Availability

__all__ = ["CHAR_WIDTH", "MapEdge", "MapGraph", "MapNode", "build", "render", "spec"]

CHAR_WIDTH = 7.4  # points per character of the 12 px label font (generous)
_PAD = 12.0
_MAX_CHARS = 34
_SERVICE_H, _TOPIC_H = 46.0, 28.0
_MIN_W = {"service": 160.0, "topic": 96.0}  # a service box holds both badges


@dataclass(frozen=True)
class MapNode:
    """A service (with availability, site and queue badges) or a topic."""

    key: str
    label: str
    kind: str  # "service" or "topic"
    status: Availability | None = None
    site: str | None = None
    backlog: int = 0
    dead: int = 0

    @property
    def shown(self) -> str:
        """The label as it fits in the box."""
        return self.label if len(self.label) <= _MAX_CHARS else self.label[: _MAX_CHARS - 1] + "…"

    @property
    def width(self) -> float:
        return max(_MIN_W[self.kind], len(self.shown) * CHAR_WIDTH + 2 * _PAD)

    @property
    def height(self) -> float:
        return _SERVICE_H if self.kind == "service" else _TOPIC_H


@dataclass(frozen=True)
class MapEdge:
    """Messages along one hop over the window, and how many of them failed."""

    source: str
    target: str
    count: int
    rate: float
    errors: int

    @property
    def error_rate(self) -> float:
        return min(1.0, self.errors / self.count) if self.count else 0.0


@dataclass(frozen=True)
class MapGraph:
    nodes: dict[str, MapNode]
    edges: list[MapEdge]


def build(
    flows: Flows,
    window: float,
    status: Mapping[str, Availability],
    sites: Mapping[str, str],
    states: Mapping[str, Mapping[str, int]],
) -> MapGraph:
    """Nodes and edges from the flows, the services' availability, sites and state counts."""
    services = set(status)
    topics: set[str] = set()
    hops: dict[tuple[str, str], list[int]] = {}
    for (publisher, topic, consumer), (count, errors) in flows.items():
        topics.add(topic)
        services.add(publisher)
        hop = (f"s:{publisher}", f"t:{topic}")
        if consumer:
            services.add(consumer)
            hop = (f"t:{topic}", f"s:{consumer}")
        total = hops.setdefault(hop, [0, 0])
        total[0] += count
        total[1] += errors
    nodes: dict[str, MapNode] = {}
    for name in sorted(services):
        counts = states.get(name, {})
        nodes[f"s:{name}"] = MapNode(
            key=f"s:{name}",
            label=name,
            kind="service",
            status=status.get(name),
            site=sites.get(name),
            backlog=counts.get("received", 0) + counts.get("failed", 0),
            dead=counts.get("dead", 0),
        )
    for topic in sorted(topics):
        nodes[f"t:{topic}"] = MapNode(key=f"t:{topic}", label=topic, kind="topic")
    edges = [
        MapEdge(a, b, n, n / window if window else 0.0, e)
        for (a, b), (n, e) in sorted(hops.items())
        if n
    ]
    return MapGraph(nodes, edges)


def spec(graph: MapGraph) -> GraphSpec:
    """The layout problem: boxes by label size, the hops, and a cluster per site holding
    its services and the topics only that site publishes (so no site box spans a topic
    that lies between its services)."""
    publisher_sites: dict[str, set[str | None]] = {}
    for edge in graph.edges:
        source = graph.nodes[edge.source]
        if source.kind == "service":
            publisher_sites.setdefault(edge.target, set()).add(source.site)
    by_site: dict[str, list[str]] = {}
    for node in graph.nodes.values():
        sites = {node.site} if node.kind == "service" else publisher_sites.get(node.key, set())
        site = next(iter(sites)) if len(sites) == 1 else None
        if site:
            by_site.setdefault(site, []).append(node.key)
    return GraphSpec(
        nodes=tuple((n.key, n.width, n.height) for n in graph.nodes.values()),
        edges=tuple((e.source, e.target) for e in graph.edges),
        clusters=tuple((site, tuple(keys)) for site, keys in sorted(by_site.items())),
    )


async def render(graph: MapGraph) -> Markup:
    """The map as inline SVG (no script), at its natural size."""
    if not graph.nodes:
        return Markup(
            '<svg class="map" viewBox="0 0 400 60" role="img" aria-label="system map" '
            'xmlns="http://www.w3.org/2000/svg"><text class="empty" x="200" y="34" '
            'text-anchor="middle">no services seen yet</text></svg>'
        )
    placed = await layout(spec(graph))
    return Markup(_svg(graph, placed))


def _svg(graph: MapGraph, placed: Layout) -> str:
    w, h = placed.width, placed.height
    parts = [
        f'<svg class="map" viewBox="0 0 {w:.0f} {h:.0f}" width="{w:.0f}" height="{h:.0f}" '
        'role="img" aria-label="system map" xmlns="http://www.w3.org/2000/svg">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="10" '
        'markerHeight="10" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>',
    ]
    for site, box in placed.clusters:
        parts.append(
            f'<g class="site-box" data-site="{escape(site)}"><rect x="{box.x:.1f}" '
            f'y="{box.y:.1f}" width="{box.width:.1f}" height="{box.height:.1f}" rx="8"/>'
            f'<text x="{box.x + 8:.1f}" y="{box.y + 14:.1f}">site {escape(site)}</text></g>'
        )
    peak = max((e.rate for e in graph.edges), default=0.0) or 1.0
    for edge in graph.edges:
        path = placed.edges.get((edge.source, edge.target))
        if path is not None:
            parts.append(_edge(graph, edge, path, peak))
    parts.extend(_node(node, placed) for node in graph.nodes.values())
    parts.append("</svg>")
    return "".join(parts)


def _compact(count: int) -> str:
    """At most four characters: 999, 1.2k, 12k, 3.4M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= limit:
            value = count / limit
            return f"{value:.1f}{suffix}" if value < 10 else f"{value:.0f}{suffix}"
    return str(count)


def _severity(error_rate: float) -> str:
    return "bad" if error_rate >= 0.05 else "warn" if error_rate > 0 else "ok"


def _edge(graph: MapGraph, edge: MapEdge, path: EdgePath, peak: float) -> str:
    if not path.points:
        return ""
    (x0, y0), rest = path.points[0], path.points[1:]
    d = f"M{x0:.1f},{y0:.1f}" + "".join(
        f" C{' '.join(f'{x:.1f},{y:.1f}' for x, y in rest[i : i + 3])}"
        for i in range(0, len(rest) - 2, 3)
    )
    if path.tip is not None:
        d += f" L{path.tip[0]:.1f},{path.tip[1]:.1f}"
    stroke = 1.0 + 5.0 * math.sqrt(edge.rate / peak)
    source, target = graph.nodes[edge.source].label, graph.nodes[edge.target].label
    title = (
        f"{source} → {target}: {edge.rate:.3g} msg/s, {edge.count} messages, "
        f"{edge.errors} failed ({edge.error_rate:.0%})"
    )
    return (
        f'<path class="edge {_severity(edge.error_rate)}" stroke-width="{stroke:.1f}" '
        f'marker-end="url(#arrow)" d="{d}" data-from="{escape(source)}" '
        f'data-to="{escape(target)}"><title>{escape(title)}</title></path>'
    )


def _node(node: MapNode, placed: Layout) -> str:
    box = placed.nodes[node.key]
    cx = box.x + box.width / 2
    if node.kind == "topic":
        return (
            f'<g class="node topic" data-topic="{escape(node.label)}"><rect x="{box.x:.1f}" '
            f'y="{box.y:.1f}" width="{box.width:.1f}" height="{box.height:.1f}" rx="14"/>'
            f'<text x="{cx:.1f}" y="{box.y + 18:.1f}" text-anchor="middle">'
            f"{escape(node.shown)}</text><title>topic {escape(node.label)}</title></g>"
        )
    status = node.status.value if node.status else "external"
    badges = [("queued", node.backlog, "backlog"), ("dead", node.dead, "dead")]
    shown = [(f"{_compact(count)} {word}", css) for word, count, css in badges if count]
    badge_x = box.x + 6.0
    badge_svg = []
    for text, css in shown:
        width = len(text) * 6.0 + 10
        badge_svg.append(
            f'<g class="map-badge {css}"><rect x="{badge_x:.1f}" y="{box.y + 26:.1f}" '
            f'width="{width:.1f}" height="15" rx="7"/><text x="{badge_x + 5:.1f}" '
            f'y="{box.y + 37:.1f}">{escape(text)}</text></g>'
        )
        badge_x += width + 4
    sub = "" if shown else f'<text class="sub" x="{cx:.1f}" y="{box.y + 38:.1f}" '
    sub += "" if shown else f'text-anchor="middle">{escape(status)}</text>'
    tooltip = f"{node.label}: {status}" + (f", site {node.site}" if node.site else "")
    tooltip += f", {node.backlog} queued, {node.dead} dead"
    return (
        f'<a href="/services/{quote(node.label, safe="")}" class="node-link">'
        f'<g class="node service {status}" data-service="{escape(node.label)}">'
        f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" '
        f'height="{box.height:.1f}" rx="6"/>'
        f'<text x="{cx:.1f}" y="{box.y + 18:.1f}" text-anchor="middle">{escape(node.shown)}</text>'
        f"{sub}{''.join(badge_svg)}<title>{escape(tooltip)}</title></g></a>"
    )
