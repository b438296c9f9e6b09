"""The fault schedule is a function of the seed, and strikes with every kind asked for."""

from __future__ import annotations

import pytest

from stalwart.chaos.campaign import effectively_once, targets_for
from stalwart.chaos.schedule import FaultKind, plan

_PROGRAMS = ["delivery", "dispatcher", "leaker", "persist", "pipeline-eu", "pipeline-jao", "qa"]
_BROKERS = ["broker-1", "broker-2", "broker-3"]
_TARGETS = targets_for(
    _PROGRAMS, ["eu", "jao"], ["jao", "eu", "na", "ea"], brokers=_BROKERS, postgres=True
)


def test_the_same_seed_gives_the_same_schedule() -> None:
    first = plan(42, 180.0, list(FaultKind), _TARGETS)
    assert plan(42, 180.0, list(FaultKind), _TARGETS) == first
    assert plan(43, 180.0, list(FaultKind), _TARGETS) != first


def test_every_kind_strikes_at_least_once_in_its_own_slot() -> None:
    for seed in range(20):
        schedule = plan(seed, 60.0, list(FaultKind), _TARGETS)
        assert {fault.kind for fault in schedule} == set(FaultKind)
        for fault in schedule:
            assert fault.target in _TARGETS[fault.kind]
        ends = [fault.at + fault.hold for fault in schedule]
        starts = [fault.at for fault in schedule[1:]]
        assert all(end <= start for end, start in zip(ends, starts, strict=False))
        assert ends[-1] <= 60.0


def test_the_process_faults_can_strike_the_watchdog_and_the_ha_leader() -> None:
    targets = targets_for(_PROGRAMS, [])
    assert {"watchdog", "ha-leader", "persist"} <= set(targets[FaultKind.KILL])
    assert "leaker" not in targets[FaultKind.STOP]
    assert targets[FaultKind.LEAK] == ["leaker"]
    assert targets[FaultKind.SLOW_PIPELINE] == ["pipeline-eu", "pipeline-jao"]
    assert not {FaultKind.DISK_FULL, FaultKind.WAN_CUT, FaultKind.BROKER_NODE_LOSS} & set(targets)


def test_the_network_faults_strike_the_sites_and_each_broker_node() -> None:
    targets = targets_for(_PROGRAMS, [], ["jao", "eu"], brokers=_BROKERS, postgres=True)
    assert targets[FaultKind.WAN_CUT] == ["jao", "eu"]
    assert targets[FaultKind.POSTGRES_RESTART] == ["store"]
    assert targets[FaultKind.BROKER_NODE_LOSS] == targets[FaultKind.BROKER_PARTITION] == _BROKERS


def test_a_long_schedule_strikes_every_broker_node() -> None:
    schedule = plan(8, 3600.0, list(FaultKind), _TARGETS, gap=5.0)
    struck = {f.target for f in schedule if f.kind is FaultKind.BROKER_NODE_LOSS}
    assert struck == set(_BROKERS)


@pytest.mark.parametrize(
    ("kinds", "targets", "message"),
    [
        ([], _TARGETS, "no fault kinds"),
        ([FaultKind.DISK_FULL], {FaultKind.DISK_FULL: []}, "has no target"),
    ],
)
def test_a_schedule_that_cannot_strike_is_refused(
    kinds: list[FaultKind], targets: dict[FaultKind, list[str]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plan(1, 60.0, kinds, targets)


def test_only_idempotent_services_promise_one_run_per_message() -> None:
    once = effectively_once()
    assert {"dispatcher", "pipeline-eu", "qa", "delivery", "transfer-eu"} <= once
    assert not {"tracker", "calibration"} & once


def test_an_hour_at_a_five_second_gap_strikes_every_kind_fifty_times() -> None:
    # The long campaign of docs/chaos-campaign-1h: `--duration 1h --gap 5 --seed 8`
    schedule = plan(8, 3600.0, list(FaultKind), _TARGETS, gap=5.0)
    per_kind = {kind: sum(1 for f in schedule if f.kind is kind) for kind in FaultKind}
    assert min(per_kind.values()) >= 50, per_kind
    # And each fault holds at most half its 5 s slot, at least 2 s unless instant
    assert all(f.hold == 0 or 2.0 <= f.hold <= 2.5 for f in schedule)
