"""Values the command line parser checks itself, so that nonsense is a usage error
(exit 2, naming the option) before a command starts: durations, sizes, times.

Each is a ``parser=`` for a Typer option; a ValueError becomes "Invalid value
for '--ttl': ...". The parsing itself lives with the settings and the store;
these only bound it and say what to write instead.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Final

__all__ = [
    "MAX_COUNT",
    "MAX_SECONDS",
    "MIN_RATE",
    "duration",
    "moment",
    "nonblank",
    "rate",
    "size",
]

MAX_SECONDS: Final = 10 * 365 * 86400.0
"""Ten years: no timeout, lifetime or interval of stalwart is longer."""
MAX_COUNT: Final = 10**9
"""Beyond any count of messages, rows or items one command handles."""
MIN_RATE: Final = 10**6
"""Bytes per second: below it a scrub of one block takes longer than anyone waits."""


def nonblank(text: str) -> str:
    """Text that says something: a report, its source, a token's subject."""
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def duration(text: str | float) -> float:
    """``90``, ``30s``, ``15m``, ``1h``, ``7d`` -> seconds, positive and at most ten years."""
    from stalwart.errors import ConfigError
    from stalwart.service import parse_ttl

    try:
        seconds = parse_ttl(str(text))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ValueError(f"duration {text!r} is over ten years; write e.g. 30s, 15m, 1h or 7d")
    return seconds


def size(text: str) -> int:
    """``4MiB``, ``200MB``, ``200MB/s`` -> bytes, positive."""
    from stalwart.config import parse_size

    return parse_size(text)  # its SizeError is a ValueError that says how to write one


def rate(text: str) -> int:
    """``200MB/s`` -> bytes per second, at least :data:`MIN_RATE`."""
    value = size(text)
    if value < MIN_RATE:
        raise ValueError(f"rate {text!r} is under 1MB/s; write e.g. 50MB/s or 200MB/s")
    return value


def moment(text: str) -> datetime:
    """An ISO-8601 time or an age (``10m``, ``2h``, ``3d``) -> UTC time."""
    from stalwart.store.queries import parse_when

    try:
        return parse_when(text)
    except OverflowError:
        raise ValueError(f"{text!r} is too far back; write an ISO time or e.g. 90d") from None
