"""Probes: late, slow and runaway verdicts with their evidence."""

from __future__ import annotations

import os

from stalwart.watchdog import ProgramSettings
from stalwart.watchdog.probes import HeartbeatProbe, ResourceProbe, ResourceSample


def test_late_after_timeout_with_extra_grace_before_the_first_beat() -> None:
    probe = HeartbeatProbe(started=100.0)
    assert probe.late(104.0, timeout=2.0, startup=3.0) is None, "start-up grace"
    verdict = probe.late(106.0, timeout=2.0, startup=3.0)
    assert verdict is not None and verdict.kind == "late"
    assert "no heartbeat since start" in verdict.reason
    probe.beat(106.0)
    assert probe.late(107.5, timeout=2.0) is None
    late = probe.late(108.5, timeout=2.0)
    assert late is not None and late.evidence == {
        "silent_for": 2.5,
        "heartbeat_timeout": 2.0,
        "beats": 1,
    }


def test_slow_needs_a_full_window_then_compares_the_rate() -> None:
    probe = HeartbeatProbe(started=0.0)
    for t in range(0, 11):
        probe.beat(float(t), progress=t * 10)  # 10 per second
    assert probe.slow(10.0, min_rate=5.0, window=5.0) is None
    assert probe.slow(3.0, min_rate=50.0, window=5.0) is None, "not judged before a window"
    for t in range(11, 17):
        probe.beat(float(t), progress=100)  # stalled
    verdict = probe.slow(16.0, min_rate=5.0, window=5.0)
    assert verdict is not None and verdict.kind == "slow"
    assert verdict.evidence["rate"] == 0.0 and verdict.evidence["progress"] == 100


def test_a_counter_that_restarts_is_a_new_baseline() -> None:
    probe = HeartbeatProbe(started=0.0)
    probe.beat(1.0, progress=1000)
    probe.beat(2.0, progress=5)
    assert probe.rate(6.0, window=5.0) == 1.0  # 5 items since the reset, over 5 s


def test_runaway_checks_each_limit_and_cpu_only_after_its_duration() -> None:
    program = ProgramSettings(
        name="p", command=["x"], max_memory=1000, max_cpu=50, cpu_duration=2.0, max_children=2
    )
    probe = ResourceProbe(pid=os.getpid())
    hot = ResourceSample(rss=10, cpu=90.0, open_files=3, threads=1, children=0)
    assert probe.check(program, hot, now=0.0) is None
    verdict = probe.check(program, hot, now=2.5)
    assert verdict is not None and verdict.evidence["limit"] == "max_cpu"
    fat = ResourceSample(rss=2000, cpu=1.0, open_files=3, threads=1, children=0)
    assert probe.check(program, fat, 3.0).evidence["limit"] == "max_memory"  # type: ignore[union-attr]
    forky = ResourceSample(rss=10, cpu=1.0, open_files=3, threads=1, children=3)
    assert probe.check(program, forky, 4.0).evidence["children"] == 3  # type: ignore[union-attr]
