"""Backoff and intensity: the arithmetic of restart pacing."""

from __future__ import annotations

import random

from stalwart.watchdog.config import BackoffSettings, IntensitySettings
from stalwart.watchdog.restart import Backoff, Intensity


def test_backoff_doubles_up_to_its_cap_and_resets_after_a_stable_run() -> None:
    # Given a backoff without jitter
    backoff = Backoff(BackoffSettings(initial=1, factor=2, max=5, jitter=0, reset_after=30))
    # When failures accumulate, Then delays grow and stop at max
    assert [backoff.next_delay() for _ in range(5)] == [1, 2, 4, 5, 5]
    # When a run lasts less than reset_after, Then nothing resets
    assert backoff.stable_for(10) is False
    # When a run lasts reset_after, Then it starts over at initial
    assert backoff.stable_for(30) is True
    assert backoff.next_delay() == 1


def test_jitter_stays_within_its_fraction_and_under_the_cap() -> None:
    backoff = Backoff(BackoffSettings(initial=10, factor=1, max=11, jitter=0.2), random.Random(1))
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(8 <= d <= 11 for d in delays)
    assert len(set(delays)) > 100, "jitter spreads restarts"


def test_intensity_counts_restarts_in_a_sliding_window() -> None:
    # Given at most 3 restarts within 10 s
    intensity = Intensity(IntensitySettings(max_restarts=3, within=10))
    for t in (0.0, 1.0, 2.0):
        assert not intensity.exceeded(t)
        intensity.record(t)
    # Then a fourth within the window is too many
    assert intensity.exceeded(5.0)
    # And once the oldest falls out of the window, one more is allowed
    assert not intensity.exceeded(10.5)
