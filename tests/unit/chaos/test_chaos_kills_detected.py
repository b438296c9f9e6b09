"""``kills-detected`` counts the watchdog's record of the killed run's end, timed from the kill.

Of the five kills a 1-hour campaign (seed 8) reported "not detected", three were in
its first 4 minutes, whose events the demo's retention had deleted (see
test_chaos_keeps_store). Of the other two, one (fault 598) struck pipeline-ea as
the watchdog halted every program after a broker loss (heartbeats travel over the
bus): a run the watchdog ends is recorded as ``halted``, not ``exited``. The other
(fault 394, kill persist) was followed at once by fault 395, SIGSTOP of the watchdog
for 2.5 s: a frozen watchdog records nothing until its SIGCONT. And a kill strikes
only once its record is in the store, so the 2 s run from then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from stalwart.chaos.checker import Checker
from stalwart.chaos.events import Phase, Recorder
from stalwart.chaos.journal import Entry
from stalwart.chaos.schedule import FaultKind, Planned
from stalwart.envelope import Envelope, utcnow
from stalwart.store import Store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    await opened.close()


def _event(kind: str, program: str, at: datetime) -> Envelope:
    body = {"event": kind, "program": program}
    return Envelope.new(f"sys.watchdog.{kind}", body, created_at=at)


async def _kill(store: Store, target: str, struck: datetime) -> Entry:
    """A kill the campaign struck at ``struck`` (its record is stored now)."""
    entry = Entry(0, Planned(1.0, FaultKind.KILL, target, 0.0), restarts=target)
    entry.injected_at = struck
    await Recorder(store).record(1, 0, "kill", target, Phase.INJECTED)
    return entry


def _on_watchdog(kind: FaultKind, injected: datetime, healed: datetime) -> Entry:
    entry = Entry(1, Planned(2.0, kind, "watchdog", 2.5), restarts="*")
    entry.injected_at, entry.healed_at = injected, healed
    return entry


async def _detail(store: Store, *journal: Entry) -> list[str]:
    checker = Checker(store.engine, utcnow() - timedelta(minutes=1))
    return [v.detail for v in await checker.kills_detected(journal)]


def _s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


async def test_a_kill_during_a_halt_counts_the_halted_record(store: Store) -> None:
    # Given a program reported late and being halted (SIGTERM, grace) when the kill struck
    struck = utcnow()
    kill = await _kill(store, "persist", struck)
    await store.write([_event("late", "persist", struck - _s(0.2))])
    # When the halt's record follows the kill, and no `exited` does
    await store.write([_event("halted", "persist", struck + _s(0.4))])
    await store.write([_event("restarted", "persist", struck + _s(0.6))])
    # Then the kill is accounted for
    assert await _detail(store, kill) == []


async def test_a_graceful_stop_counts_too(store: Store) -> None:
    struck = utcnow()
    kill = await _kill(store, "qa", struck)
    await store.write([_event("stopped", "qa", struck + _s(1.0))])
    assert await _detail(store, kill) == []


async def test_the_window_runs_from_when_the_kill_was_recorded(store: Store) -> None:
    # Given a kill whose record took 1.5 s to store (the kill strikes after it)
    struck = utcnow() - _s(1.5)
    kill = await _kill(store, "pipeline-na", struck)
    # When the watchdog reports the death 1 s after the record, 2.5 s after `struck`
    await store.write([_event("exited", "pipeline-na", utcnow() + _s(1.0))])
    # Then it was on time
    assert await _detail(store, kill) == []


@pytest.mark.parametrize(
    ("kind", "after"),
    [
        ("exited", 3.0),  # too late
        ("halted", 3.0),  # too late
        ("halted", -0.5),  # ended before the kill: another run
        ("restarted", 0.5),  # a restart is not the end of the killed run
        ("late", 0.5),  # nor a verdict
    ],
)
async def test_no_end_of_the_run_near_the_kill_is_a_violation(
    store: Store, kind: str, after: float
) -> None:
    struck = utcnow()
    kill = await _kill(store, "transfer-jao", struck)
    await store.write([_event(kind, "transfer-jao", struck + _s(after))])
    # Another program's end does not count either
    await store.write([_event("exited", "transfer-eu", struck + _s(0.5))])
    found = await _detail(store, kill)
    assert len(found) == 1
    assert "no `exited`" in found[0]
    assert "transfer-jao" in found[0]


async def test_a_watchdog_frozen_after_the_kill_has_2s_from_its_sigcont(store: Store) -> None:
    # Given a kill, and at once the watchdog stopped (SIGSTOP) for 2.5 s (faults 394, 395)
    struck = utcnow()
    kill = await _kill(store, "persist", struck)
    frozen = _on_watchdog(FaultKind.STOP, struck + _s(0.05), struck + _s(2.55))
    # When the watchdog records the death once resumed
    await store.write([_event("exited", "persist", struck + _s(2.6))])
    # Then it was on time for a watchdog that could not watch
    assert await _detail(store, kill, frozen) == []
    # But not later than 2 s after its SIGCONT
    late = await _kill(store, "qa", struck)
    await store.write([_event("exited", "qa", struck + _s(4.7))])
    assert len(await _detail(store, late, frozen)) == 1


async def test_a_watchdog_frozen_after_the_window_changes_nothing(store: Store) -> None:
    struck = utcnow()
    kill = await _kill(store, "qa", struck)
    later = _on_watchdog(FaultKind.STOP, struck + _s(3.0), struck + _s(5.5))
    await store.write([_event("exited", "qa", struck + _s(5.6))])
    assert len(await _detail(store, kill, later)) == 1


async def test_a_watchdog_killed_after_the_kill_owes_no_record(store: Store) -> None:
    # Given a kill, then the watchdog killed before it reported it (the program's run
    # ends with the watchdog; a new watchdog knows nothing of it)
    struck = utcnow()
    kill = await _kill(store, "qa", struck)
    gone = _on_watchdog(FaultKind.KILL, struck + _s(0.05), struck + _s(1.0))
    # Then nothing is due
    assert await _detail(store, kill, gone) == []
    # But a watchdog killed before the kill does not excuse it
    before = _on_watchdog(FaultKind.KILL, struck - _s(10.0), struck - _s(8.0))
    assert len(await _detail(store, kill, before)) == 1
