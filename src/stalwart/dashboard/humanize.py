"""Panel values for people: headers in words, units on figures, words for booleans.

The panels show whatever a part returns, so the unit is read from the
field's name: ``rss``/``memory``/``bytes`` in MiB, ``cpu`` in per cent,
``age``/``uptime``/``..._in``/``..._s`` and the like as durations; booleans
read yes/no, empty values a dash, lists a list, numeric series a sparkline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

from stalwart.dashboard.charts import sparkline

__all__ = ["cell", "duration", "header", "mib"]

_BYTES = ("rss", "memory", "bytes", "size")
_SECONDS_SUFFIXES = ("_in", "_s", "_seconds", "_secs", "_for")
_SECONDS_WORDS = ("age", "uptime", "interval", "timeout", "duration", "delay", "lag", "elapsed")


def header(key: str) -> str:
    """``last_reason`` -> ``last reason``; ``rss`` -> ``memory``; ``cpu`` -> ``CPU``."""
    words = key.replace("_", " ").strip()
    return {"rss": "memory", "cpu": "CPU", "pid": "PID"}.get(words, words)


def mib(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB"


def duration(seconds: float) -> str:
    """4.4 s, 3 min 20 s, 2 h 5 min, 3 d 4 h."""
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 60:
        return f"{seconds:.3g} s" if seconds < 10 else f"{seconds:.0f} s"
    for size, unit, small, small_unit in (
        (86400, "d", 3600, "h"),
        (3600, "h", 60, "min"),
        (60, "min", 1, "s"),
    ):
        if seconds >= size:
            whole, rest = divmod(int(seconds), size)
            part = rest // small
            return f"{whole} {unit} {part} {small_unit}" if part else f"{whole} {unit}"
    return f"{seconds:.0f} s"  # pragma: no cover - every value >= 60 matched above


def _is_seconds(key: str) -> bool:
    return key.endswith(_SECONDS_SUFFIXES) or any(w in key for w in _SECONDS_WORDS)


def _number(key: str, value: float) -> str:
    lowered = key.lower()
    if any(w in lowered for w in _BYTES):
        return mib(value)
    if "cpu" in lowered:
        return f"{value:.1f} %"
    if _is_seconds(lowered):
        return duration(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.3g}"


def cell(key: str, value: Any) -> Markup:
    """One value as escaped HTML with its unit."""
    if value is None or value == "" or value == [] or value == {}:
        return Markup('<span class="muted">&ndash;</span>')
    if isinstance(value, bool):
        return (
            Markup(f'<span class="badge {"up" if value else "external"}">')
            + ("yes" if value else "no")
            + Markup("</span>")
        )
    if isinstance(value, int | float):
        return Markup(escape(_number(key, value)))
    if isinstance(value, Mapping):
        items = "".join(
            f"<li>{escape(header(str(k)))}: {cell(str(k), v)}</li>" for k, v in value.items()
        )
        return Markup(f'<ul class="plain">{items}</ul>')
    if isinstance(value, Sequence) and not isinstance(value, str):
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            latest = _number(key, value[-1])
            return (
                Markup(f'<span title="latest {escape(latest)}">')
                + sparkline([float(v) for v in value])
                + Markup(f' <span class="muted">{escape(latest)}</span></span>')
            )
        items = "".join(f"<li>{cell(key, v)}</li>" for v in value)
        return Markup(f'<ul class="plain">{items}</ul>')
    return Markup(f'<span class="wrap">{escape(str(value))}</span>')
