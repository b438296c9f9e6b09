"""A campaign's record is reaped only when the process that wrote it is gone: no such
pid, a zombie, or the pid now belongs to a process started at another time."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from stalwart.chaos.leftovers import Claim, Record, owner_alive, reap
from waiting import until_sync


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(["sleep", "60"])
    yield child
    child.kill()
    child.wait()


def _started(pid: int) -> float:
    return float(psutil.Process(pid).create_time())


def test_a_running_owner_is_alive() -> None:
    # Given this process, with its own start time
    pid = os.getpid()
    # When it is judged / Then it is alive
    assert owner_alive(pid, _started(pid))


def test_an_owner_that_exited_is_gone(sleeper: subprocess.Popen[bytes]) -> None:
    # Given a child that ran, then was killed and reaped: its pid names no process
    started = _started(sleeper.pid)
    sleeper.kill()
    sleeper.wait()
    # When it is judged / Then it is gone
    assert not owner_alive(sleeper.pid, started)


def test_a_killed_owner_not_yet_reaped_is_gone(sleeper: subprocess.Popen[bytes]) -> None:
    # Given a child killed but not waited for: a zombie, its pid still listed
    started = _started(sleeper.pid)
    sleeper.kill()
    until_sync(
        lambda: psutil.Process(sleeper.pid).status(),
        10.0,
        "the killed child to be a zombie",
        accept=lambda status: status == psutil.STATUS_ZOMBIE,
    )
    # When it is judged / Then it is gone
    assert not owner_alive(sleeper.pid, started)


def test_a_pid_reused_by_another_process_is_not_the_owner() -> None:
    # Given a record whose pid now runs a process started at another time
    pid = os.getpid()
    # When it is judged / Then its owner is gone (a second, or one clock tick, apart)
    assert not owner_alive(pid, _started(pid) - 1.0)
    assert not owner_alive(pid, _started(pid) + 0.01)


def test_reap_deletes_a_dead_owners_record_and_keeps_a_live_ones(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    # Given this process's claim and a record written by a process now gone
    mine = Claim(tmp_path)
    started = _started(sleeper.pid)
    sleeper.kill()
    sleeper.wait()
    dead = Record("chdead", sleeper.pid, started)
    (tmp_path / "chdead.json").write_text(dead.dumps())
    # When the records are reaped
    reaped = reap(tmp_path)
    # Then only the dead owner's record is gone, and the reap says whose it was
    assert reaped == [f"chdead (pid {sleeper.pid}): nothing"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{mine.tag}.json"]
    assert Record.loads(mine.path.read_text()) == mine.record
    # ... and the claim deletes its record when released
    mine.release()
    assert not mine.path.exists()
