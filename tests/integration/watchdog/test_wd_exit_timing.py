"""When the watchdog reports a SIGKILLed program's ``exited``: at once after a restart
and behind an ``exec`` shim (the chaos sites' ``ip netns exec`` shim execs too, so the
watchdog's child is the program itself), but only once its event loop runs again:
a watchdog frozen or busy reports the death late, timed when it saw it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
from wd_support import PY, program, script

from stalwart.envelope import utcnow

SLEEPER = "import time\ntime.sleep(3600)\n"


async def test_a_kill_just_after_a_restart_is_reported_at_once(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a program that crashes once, then is restarted
    body = "import os, sys, time\nif not os.path.exists(sys.argv[1]):\n"
    body += "    open(sys.argv[1], 'w').close()\n    sys.exit(1)\ntime.sleep(3600)\n"
    cmd = [*script(tmp_path, "once", body), str(tmp_path / "crashed")]
    _watchdog, events = await supervise(program("once", cmd))
    restarted = (await events.wait_kind("restarted", "once"))[0]
    # When it is killed while starting up
    killed_at = utcnow()
    assert restarted.pid is not None
    os.kill(restarted.pid, signal.SIGKILL)
    # Then its exit is reported at once
    exited = (await events.wait_kind("exited", "once", count=2))[-1]
    assert exited.pid == restarted.pid
    assert exited.evidence["signal"] == "SIGKILL"
    assert (exited.at - killed_at).total_seconds() < 0.5


async def test_a_kill_behind_an_exec_shim_is_reported_at_once(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a program started through a shell shim that execs the interpreter
    shim = tmp_path / "python"
    shim.write_text(f'#!/bin/sh\nexec {PY} "$@"\n')
    shim.chmod(0o755)
    target = script(tmp_path, "sleeper", SLEEPER)[1]
    _watchdog, events = await supervise(program("shimmed", [str(shim), target]))
    started = (await events.wait_kind("started", "shimmed"))[0]
    assert started.pid is not None
    # The watchdog's child is the program itself (what the campaign kills), not a shell
    for _ in range(50):
        if target in psutil.Process(started.pid).cmdline():
            break
        await asyncio.sleep(0.02)
    assert target in psutil.Process(started.pid).cmdline()
    # When it is killed, Then the exit is reported at once
    killed_at = utcnow()
    os.kill(started.pid, signal.SIGKILL)
    exited = (await events.wait_kind("exited", "shimmed"))[0]
    assert exited.evidence["signal"] == "SIGKILL"
    assert (exited.at - killed_at).total_seconds() < 0.5


async def test_a_death_while_the_loop_is_blocked_is_reported_when_it_runs(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a supervised program
    _watchdog, events = await supervise(program("victim", script(tmp_path, "v", SLEEPER)))
    started = (await events.wait_kind("started", "victim"))[0]
    assert started.pid is not None
    # When it is killed while the watchdog's loop is blocked for 1.5 s
    killed_at = utcnow()
    os.kill(started.pid, signal.SIGKILL)
    time.sleep(1.5)  # noqa: ASYNC251 - the point: the loop cannot run
    # Then the exit is reported once the loop runs, timed then (not at the death)
    exited = (await events.wait_kind("exited", "victim"))[0]
    assert (exited.at - killed_at).total_seconds() >= 1.5
    assert exited.evidence["ran_for"] >= 1.5  # counted to when it was seen
