"""Restart pacing: exponential backoff with jitter, and the intensity limit.

Backoff keeps a crashing program from burning the machine; the intensity limit
(Erlang/OTP's "max restarts within a period") turns a program that cannot stay
up into a ``fatal`` state and an alarm rather than an endless loop.
"""

from __future__ import annotations

import random
from collections import deque

from stalwart.watchdog.config import BackoffSettings, IntensitySettings

__all__ = ["Backoff", "Intensity"]


class Backoff:
    """Delays ``initial * factor**n`` capped at ``max``, each with +/- ``jitter``."""

    def __init__(self, settings: BackoffSettings, rng: random.Random | None = None) -> None:
        self._settings = settings
        self._rng = rng or random.Random()
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures

    def next_delay(self) -> float:
        """The delay before the next restart; each call counts one more failure."""
        s = self._settings
        base = min(s.max, s.initial * s.factor**self._failures)
        self._failures += 1
        spread = base * s.jitter
        return max(0.0, min(s.max, base + self._rng.uniform(-spread, spread)))

    def stable_for(self, seconds: float) -> bool:
        """Start over at ``initial`` once a run lasted ``reset_after``; True if it did."""
        if seconds >= self._settings.reset_after and self._failures:
            self._failures = 0
            return True
        return False


class Intensity:
    """A sliding window of restart times; ``exceeded`` once one more would be too many."""

    def __init__(self, settings: IntensitySettings) -> None:
        self._settings = settings
        self._times: deque[float] = deque()

    def record(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def count(self, now: float) -> int:
        self._trim(now)
        return len(self._times)

    def exceeded(self, now: float) -> bool:
        """True when one more restart now would pass ``max_restarts`` within ``within``."""
        return self.count(now) >= self._settings.max_restarts

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self._settings.within:
            self._times.popleft()
