"""Graph layout by Graphviz ``dot``, run as a subprocess with a timeout.

The graph goes in as plain structure (boxes of a given size, grouped in
clusters, and directed edges); coordinates come back in SVG orientation
(y down, points). Layouts are cached by structure, so a refresh whose
rates changed but whose graph did not costs no subprocess.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from stalwart.errors import StalwartError

__all__ = ["Box", "EdgePath", "GraphSpec", "Layout", "LayoutError", "layout"]

DOT = "dot"
TIMEOUT = 10.0
_CACHE_SIZE = 32
_POINTS = 72.0  # dot sizes are in inches


class LayoutError(StalwartError):
    """``dot`` is missing, failed or took too long."""


@dataclass(frozen=True)
class GraphSpec:
    """Nodes (id -> width, height in points), clusters (label -> node ids) and edges."""

    nodes: tuple[tuple[str, float, float], ...]
    edges: tuple[tuple[str, str], ...]
    clusters: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def dot(self) -> str:
        """The graph in the DOT language; ids and labels are quoted, nothing else is said."""
        lines = [
            "digraph G {",
            "rankdir=LR; nodesep=0.25; ranksep=0.9; newrank=true; splines=true;",
            'node [shape=box fixedsize=true label=""];',
        ]
        for index, (label, members) in enumerate(self.clusters):
            lines.append(
                f"subgraph cluster_{index} {{ label={_quote('site ' + label)}; "
                "labeljust=l; margin=16; fontsize=11;"
            )
            lines.extend(f"{_quote(m)};" for m in members)
            lines.append("}")
        for name, width, height in self.nodes:
            lines.append(
                f"{_quote(name)} [width={width / _POINTS:.3f} height={height / _POINTS:.3f}];"
            )
        lines.extend(f"{_quote(a)} -> {_quote(b)};" for a, b in self.edges)
        lines.append("}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Box:
    """A rectangle by its top-left corner and size."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class EdgePath:
    """A cubic B-spline (start, then control-control-end triples) and the arrow tip."""

    points: list[tuple[float, float]]
    tip: tuple[float, float] | None


@dataclass
class Layout:
    """Where ``dot`` put everything: node boxes, cluster boxes, edge Béziers."""

    width: float
    height: float
    nodes: dict[str, Box] = field(default_factory=dict)
    clusters: list[tuple[str, Box]] = field(default_factory=list)
    edges: dict[tuple[str, str], EdgePath] = field(default_factory=dict)


_cache: OrderedDict[GraphSpec, Layout] = OrderedDict()


async def layout(spec: GraphSpec) -> Layout:
    """The layout of ``spec``, from the cache or from ``dot -Tjson``."""
    if spec in _cache:
        _cache.move_to_end(spec)
        return _cache[spec]
    result = _parse(await _run_dot(spec.dot()), [label for label, _ in spec.clusters])
    _cache[spec] = result
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return result


async def _run_dot(source: str) -> bytes:
    try:
        proc = await asyncio.create_subprocess_exec(
            DOT,
            "-Tjson",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError:
        raise LayoutError(
            "the system map needs Graphviz: install it (apt-get install graphviz)"
        ) from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(source.encode()), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise LayoutError(f"laying out the system map took over {TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        first = err.decode(errors="replace").strip().splitlines()[:1]
        raise LayoutError(f"dot failed to lay out the system map: {' '.join(first)}")
    return out


def _parse(raw: bytes, cluster_labels: list[str]) -> Layout:
    data = json.loads(raw)
    _, _, right, top = (float(v) for v in data["bb"].split(","))
    result = Layout(width=right, height=top)
    objects: Sequence[dict[str, object]] = data.get("objects", [])
    for obj in objects:
        if "bb" in obj:
            x0, y0, x1, y1 = (float(v) for v in str(obj["bb"]).split(","))
            label = cluster_labels[int(str(obj["name"]).removeprefix("cluster_"))]
            result.clusters.append((label, Box(x0, top - y1, x1 - x0, y1 - y0)))
        elif "pos" in obj:
            cx, cy = (float(v) for v in str(obj["pos"]).split(","))
            w = float(str(obj["width"])) * _POINTS
            h = float(str(obj["height"])) * _POINTS
            result.nodes[str(obj["name"])] = Box(cx - w / 2, top - cy - h / 2, w, h)
    for edge in data.get("edges", []):
        tail = str(objects[edge["tail"]]["name"])
        head = str(objects[edge["head"]]["name"])
        points: list[tuple[float, float]] = []
        end: tuple[float, float] | None = None
        for part in str(edge["pos"]).split():
            if part.startswith(("e,", "s,")):
                x, y = (float(v) for v in part[2:].split(","))
                if part[0] == "e":
                    end = (x, top - y)
                continue
            x, y = (float(v) for v in part.split(","))
            points.append((x, top - y))
        result.edges[(tail, head)] = EdgePath(points, end)
    return result


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
