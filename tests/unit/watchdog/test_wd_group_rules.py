"""Group decisions: reconstitute or degrade by policy, floor and deadline; elastic size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stalwart.watchdog import ProgramSettings
from stalwart.watchdog.groups import Scaler, desired_replicas, member_failure

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _program(**fields: Any) -> ProgramSettings:
    return ProgramSettings(name="g", command=["x"], replicas=4, **fields)


def test_auto_degrades_only_when_a_fresh_member_would_miss_the_deadline() -> None:
    program = _program(
        on_member_failure="auto", deadline=NOW + timedelta(seconds=60), startup_time=20
    )
    assert member_failure(program, 3, NOW, restart_delay=10).action == "reconstitute"
    late = member_failure(program, 3, NOW, restart_delay=50)
    assert late.action == "degrade"
    assert "after the deadline 12:01:00" in late.reason


def test_auto_without_deadline_reconstitutes() -> None:
    assert member_failure(_program(on_member_failure="auto"), 3, NOW, 1).action == "reconstitute"


def test_degrade_stops_at_the_floor() -> None:
    program = _program(on_member_failure="degrade", min_replicas=2)
    assert member_failure(program, 2, NOW, 1).action == "degrade"
    below = member_failure(program, 1, NOW, 1)
    assert below.action == "reconstitute"
    assert "below min_replicas 2" in below.reason


def test_a_single_program_is_always_restarted() -> None:
    program = ProgramSettings(name="one", command=["x"], on_member_failure="degrade")
    assert member_failure(program, 0, NOW, 1).action == "reconstitute"


def test_desired_replicas_follows_backlog_within_bounds() -> None:
    program = _program(service="q", min_replicas=1, max_replicas=5, target_backlog_per_replica=10)
    assert [desired_replicas(program, b) for b in (0, 1, 10, 11, 45, 1000)] == [1, 1, 1, 2, 5, 5]


def test_scaler_waits_out_its_cool_down() -> None:
    program = _program(
        service="q",
        min_replicas=1,
        max_replicas=5,
        target_backlog_per_replica=10,
        scale_cooldown=30,
    )
    scaler = Scaler(program)
    assert scaler.decide(1, 50, now=0.0) == 5
    assert scaler.decide(5, 0, now=10.0) is None, "within the cool-down: no flapping"
    assert scaler.decide(5, 0, now=31.0) == 1
    assert scaler.decide(1, 5, now=100.0) is None, "already the right size"
