"""Time ranges offered on every chart: 15 min, 1 h, 6 h, 24 h (``?range=``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RANGES", "RangeKey", "TimeRange", "pick"]

RangeKey = Literal["15m", "1h", "6h", "24h"]


@dataclass(frozen=True)
class TimeRange:
    """A window and the bucket width that gives it about 30 to 48 points."""

    key: str
    label: str
    window: float
    bucket: float


RANGES = {
    r.key: r
    for r in (
        TimeRange("15m", "15 min", 900.0, 30.0),
        TimeRange("1h", "1 h", 3600.0, 120.0),
        TimeRange("6h", "6 h", 21600.0, 600.0),
        TimeRange("24h", "24 h", 86400.0, 1800.0),
    )
}


def pick(key: str | None, window: float, bucket: float) -> TimeRange:
    """The range asked for, or the configured window when none (or an unknown one) is."""
    if key in RANGES:
        return RANGES[key]
    return TimeRange("", f"{window / 60:.0f} min", window, bucket)
