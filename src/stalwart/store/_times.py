"""Times on the command line and in queries: ISO-8601 or relative (``10m``, ``2h``, ``3d``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stalwart.config import DURATION, DURATION_UNITS
from stalwart.envelope import utcnow
from stalwart.errors import StalwartError

__all__ = ["TimeFormatError", "parse_duration", "parse_when"]


class TimeFormatError(StalwartError, ValueError):
    """A time or duration could not be parsed."""


def parse_duration(text: str) -> timedelta:
    """``90s``, ``10m``, ``2h``, ``3d``, ``1w`` -> timedelta."""
    match = DURATION.match(text)
    if match is None:
        raise TimeFormatError(
            f"bad duration {text!r}: use a number and a unit s, m, h, d or w, e.g. 10m or 90d"
        )
    return timedelta(seconds=float(match.group(1)) * DURATION_UNITS[match.group(2)])


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """An absolute UTC time from ISO-8601 or a duration ago (``10m`` = ten minutes ago).

    A naive ISO time is taken as UTC.
    """
    if DURATION.match(text):
        return (now or utcnow()) - parse_duration(text)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimeFormatError(
            f"bad time {text!r}: use ISO-8601 (2026-11-22T03:00:00Z) or an age like 10m, 2h, 3d"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
