"""The retry pace: bounded, growing, jittered, and refusing nonsense bounds."""

from __future__ import annotations

import random

import pytest

from stalwart.backoff import Backoff, jittered


def test_delays_grow_from_the_initial_delay_to_the_cap_and_stay_there() -> None:
    # Given a backoff from 0.5 s to 15 s
    backoff = Backoff(0.5, 15.0, rng=random.Random(7))
    # When asked for 12 delays in a row
    delays = [backoff.next() for _ in range(12)]
    # Then each lies in its window: the ceiling doubles (0.5, 1, 2, 4, 8) up to the cap
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0] + [15.0] * 7
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    # And so the pace grows: every capped delay is longer than any of the first three
    assert min(delays[5:]) > max(delays[:3])


def test_delays_are_jittered_so_that_dashboards_do_not_retry_in_step() -> None:
    # Given two dashboards' backoffs that have both reached the cap
    first, second = (
        Backoff(0.5, 15.0, rng=random.Random(1)),
        Backoff(0.5, 15.0, rng=random.Random(2)),
    )
    for _ in range(6):
        first.next(), second.next()
    # When each draws its next delays
    a = [first.next() for _ in range(20)]
    b = [second.next() for _ in range(20)]
    # Then they differ from each other and from draw to draw, within [cap / 2, cap]
    assert a != b and len(set(a)) == 20
    assert all(7.5 <= d <= 15.0 for d in a + b)


def test_reset_starts_over_from_the_initial_delay() -> None:
    backoff = Backoff(0.5, 15.0)
    for _ in range(8):
        backoff.next()
    backoff.reset()
    assert 0.25 <= backoff.next() <= 0.5


@pytest.mark.parametrize(("initial", "cap"), [(0.0, 15.0), (-1.0, 15.0), (2.0, 1.0)])
def test_bounds_that_cannot_make_a_schedule_are_refused(initial: float, cap: float) -> None:
    with pytest.raises(ValueError, match="0 < initial <= cap"):
        Backoff(initial, cap)


@pytest.mark.parametrize(
    ("tries", "ceiling"), [(0, 0.2), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (40, 1.0)]
)
def test_the_delay_after_n_tries_lies_under_its_ceiling(tries: int, ceiling: float) -> None:
    # Given retries paced from 0.2 s up to 1 s, counted by tries (message retries,
    # the persister's and a transfer's, counted by the caller)
    rng = random.Random(tries)
    # When the delay after ``tries`` failed tries is drawn many times
    delays = [jittered(tries, 0.2, 1.0, rng) for _ in range(200)]
    # Then each lies between half the ceiling and the ceiling, and they differ
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) == 200


def test_a_backoff_draws_the_same_delays_as_counting_its_tries() -> None:
    paced = Backoff(0.2, 1.0, rng=random.Random(3))
    counted = random.Random(3)
    assert [paced.next() for _ in range(6)] == [jittered(n, 0.2, 1.0, counted) for n in range(1, 7)]


def test_a_gentler_factor_grows_the_ceiling_by_it() -> None:
    # As for the embedded bus's write lock: from 0.2 ms, growing by 1.5, up to a few ms
    backoff = Backoff(0.0002, 0.005, rng=random.Random(3), factor=1.5)
    ceilings = [min(0.005, 0.0002 * 1.5**n) for n in range(12)]
    for ceiling in ceilings:
        assert ceiling / 2 <= backoff.next() <= ceiling
    with pytest.raises(ValueError, match="factor >= 1"):
        Backoff(0.1, 1.0, factor=0.5)
