"""A service's figures folded from its deliveries: buckets, sampling, depth, latency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from stalwart.dashboard.servicestats import SAMPLE, _fold, _step

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_sample_shrinks_by_halves_to_stay_near_its_size() -> None:
    assert _step(SAMPLE) == 1 and _step(SAMPLE + 1) == 2
    assert _step(SAMPLE * 5) == 8 and _step(10**9) == 16


def test_depth_is_worked_back_from_the_backlog_and_latency_read_per_bucket() -> None:
    # Given 3 buckets of 60 s: 4 arrivals in the first (one failed), 2, then 1
    arrivals = [("consumed", 0, 3), ("failed", 0, 1), ("received", 1, 2), ("received", 2, 1)]
    # And a 1-in-2 sample: one consumed in bucket 1 after 0.5 s, one still pending
    sample = [
        SimpleNamespace(
            message_created_at=T0,
            received_at=T0 + timedelta(seconds=70),
            consumed_at=T0 + timedelta(seconds=70.5),
            done_at=T0 + timedelta(seconds=70.5),
            attempts=1,
        ),
        SimpleNamespace(
            message_created_at=T0, received_at=None, consumed_at=None, done_at=None, attempts=5
        ),
    ]
    stats = _fold(T0, 60.0, 3, arrivals, sample, 2, [("boom\ntrace", 1)], {"received": 3})
    # Then counts are exact, per bucket of the message's time
    assert stats.arrived == [4, 2, 1] and stats.consumed == [3, 0, 0] and stats.failed == [1, 0, 0]
    # And depth ends at the backlog, worked back by arrivals less completions: the last
    # bucket's 1 arrival, then bucket 1's 2 arrivals and 2 completions (1 sampled, x 2)
    assert stats.depth == [2, 2, 3]
    # And latency is in the bucket it finished in; attempts scaled; reasons one line
    assert stats.latency_p50 == [None, 0.5, None]
    assert stats.attempts == {"1": 2, "4+": 2}
    assert stats.reasons == [("boom", 1)] and stats.sampled == 2
