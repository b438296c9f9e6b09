"""Program states in the store (SQLite and PostgreSQL), and supervision without a store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from wd_support import program

from stalwart.store.engine import open_engine
from stalwart.watchdog import ProgramState, program_states
from waiting import until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


async def _wait_states(url: str, check: Any, timeout: float = 15.0) -> list[ProgramState]:
    engine = await open_engine(url)
    try:
        return await until(
            lambda: program_states(engine),
            timeout,
            "the program states to match",
            accept=check,
            interval=0.1,
        )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_states_of_every_member_reach_the_store(
    backend: str, tmp_path: Path, supervise: Any, request: pytest.FixtureRequest
) -> None:
    # Given a store (SQLite or a fresh PostgreSQL database)
    url = (
        f"sqlite:///{tmp_path}/store.db"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    # When the watchdog supervises a group of two with a memory limit
    prog = program("pair", SLEEPER, replicas=2, max_memory="1GiB")
    watchdog, _events = await supervise(prog, store_url=url)
    states = await _wait_states(
        url, lambda s: len(s) == 2 and all(x.state == "running" and x.rss for x in s)
    )
    # Then each member is a row with its pid, state and resource figures
    assert [s.instance for s in states] == [0, 1]
    live = {m.pid for m in watchdog.groups["pair"].members.values()}
    assert {s.pid for s in states} == live
    assert all(s.history for s in (await _wait_states(url, lambda s: all(x.history for x in s))))
    # When one member is stopped
    watchdog.groups["pair"].members[1].request_stop("test")
    # Then the store follows
    stopped = await _wait_states(url, lambda s: s[1].state == "stopped")
    assert stopped[1].last_event == "stopped" and stopped[1].last_reason == "test"


async def test_an_unreachable_store_does_not_stop_supervision(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a store URL that cannot be reached
    url = "postgresql://postgres@127.0.0.1:1/none"
    cmd = [sys.executable, "-c", "import sys, time; time.sleep(0.2); sys.exit(4)"]
    _watchdog, events = await supervise(program("crashy", cmd), store_url=url)
    # When the program crashes, Then it is restarted anyway
    restarted = (await events.wait_kind("restarted", "crashy"))[0]
    assert restarted.reason == "exit code 4"


async def test_programs_without_limits_report_memory_and_cpu_too(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a program with no resource limit at all
    url = f"sqlite:///{tmp_path}/store.db"
    await supervise(program("plain", SLEEPER), store_url=url)
    # When it runs; Then `watchdog status` has its resident memory and CPU to show
    (state,) = await _wait_states(
        url, lambda s: len(s) == 1 and s[0].rss is not None and s[0].cpu is not None
    )
    assert state.rss is not None and state.rss > 2**20  # a Python interpreter's pages
