"""Server-side SVG charts: traffic over time and sparklines.

Plain SVG strings built here (no JavaScript library, no CDN), every label
escaped. Colours come from CSS classes so the dark and light themes apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from stalwart.dashboard.models import TopicSeries

__all__ = ["PALETTE_SIZE", "line_chart", "service_of", "sparkline", "value_chart"]

PALETTE_SIZE = 8


def service_of(sender: str) -> str:
    """``service@site/instance`` -> ``service``."""
    return sender.split("@", 1)[0] or sender


def _fmt(value: float) -> str:
    """Three significant digits, no exponent for the usual range of rates."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def line_chart(
    series: Sequence[TopicSeries],
    bucket: float,
    *,
    width: int = 640,
    height: int = 200,
    top: int = 6,
    title: str = "messages per second",
    start: datetime | None = None,
) -> Markup:
    """Lines of messages/s per topic (the ``top`` busiest, the rest summed as 'other')."""
    ranked = sorted(series, key=lambda s: sum(s.counts), reverse=True)
    shown = list(ranked[:top])
    rest = ranked[top:]
    if rest:
        length = max(len(s.counts) for s in rest)
        other = [sum(s.counts[i] for s in rest if i < len(s.counts)) for i in range(length)]
        shown.append(TopicSeries(topic="other", counts=other))
    lines = [(s.topic, [c / bucket for c in s.counts]) for s in shown]
    return value_chart(lines, bucket, width=width, height=height, title=title, start=start)


def value_chart(
    lines: Sequence[tuple[str, Sequence[float | None]]],
    bucket: float,
    *,
    width: int = 640,
    height: int = 200,
    title: str,
    start: datetime | None = None,
    empty: str = "no traffic in this window",
) -> Markup:
    """Named lines of values per bucket on one axis (a None breaks the line)."""
    pad_l, pad_b, pad_t, pad_r = 44, 18, 10, 8
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    points = max((len(v) for _, v in lines), default=0)
    peak = max((v for _, vs in lines for v in vs if v is not None), default=0.0)
    scale = _nice(peak)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):
        y = pad_t + plot_h * i / 4
        parts.append(
            f'<line class="grid" x1="{pad_l}" y1="{y:.1f}" x2="{width - pad_r}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{pad_l - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(scale * (4 - i) / 4)}</text>"
        )
    if start is not None and points >= 2:
        for i in (0, points // 2, points - 1):
            x = pad_l + plot_w * i / (points - 1)
            label = (start + timedelta(seconds=bucket * i)).strftime("%H:%M")
            anchor = "start" if i == 0 else "end" if i == points - 1 else "middle"
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{height - 4}" text-anchor="{anchor}">'
                f"{label}</text>"
            )
    if points < 2 or all(v is None for _, vs in lines for v in vs):
        parts.append(
            f'<text class="empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">'
            f"{escape(empty)}</text>"
        )
    for index, (name, values) in enumerate(lines if points >= 2 else []):
        xy = [
            (pad_l + plot_w * i / (points - 1), pad_t + plot_h * (1 - v / scale))
            for i, v in enumerate(values)
            if v is not None
        ]
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        css = f"series s{index % PALETTE_SIZE}"
        parts.append(
            f'<polyline class="{css}" points="{coords}"><title>{escape(name)}</title></polyline>'
        )
        if len(xy) <= 2:  # a lone point draws no line: mark it
            parts.extend(
                f'<circle class="{css} dot" cx="{x:.1f}" cy="{y:.1f}" r="3"/>' for x, y in xy
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return float(step * exp)
    return float(10 * exp)


def sparkline(values: Sequence[float], *, width: int = 120, height: int = 24) -> Markup:
    """A tiny trend line for tables."""
    if len(values) < 2:
        return Markup(f'<svg class="spark" width="{width}" height="{height}"></svg>')
    peak = max(values) or 1.0
    coords = " ".join(
        f"{width * i / (len(values) - 1):.1f},{height - 2 - (height - 4) * v / peak:.1f}"
        for i, v in enumerate(values)
    )
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><polyline points="{coords}"/></svg>'
    )
