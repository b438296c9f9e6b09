"""A program SIGKILLed while the watchdog is already stopping it: the watchdog's record
of that stop (``halted`` or ``stopped``) says how it really ended, not only what the
watchdog sent. A chaos campaign's kill that lands in a halt after missed heartbeats
produces no ``exited`` event: this record is what tells the kill happened."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from wd_support import BEAT, program, script

from stalwart.envelope import utcnow

# Beats three times, then goes silent; on SIGTERM it takes 1.5 s to shut down.
SLOW_TO_STOP = BEAT + (
    "import signal, sys, time\n"
    "def on_term(*_):\n    time.sleep(1.5)\n    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, on_term)\n"
    "for _ in range(3):\n    beat()\n    time.sleep(0.1)\n"
    "time.sleep(3600)\n"
)


@pytest.mark.parametrize("how", ["halted", "stopped"])
async def test_a_kill_during_the_stop_grace_is_in_the_stop_record(
    tmp_path: Path, supervise: Any, how: str
) -> None:
    # Given a program the watchdog is stopping with SIGTERM, which takes a while to obey:
    # halted after missed heartbeats, or stopped on request
    timeout = 0.6 if how == "halted" else None
    slow = program("slow", script(tmp_path, "slow", SLOW_TO_STOP), heartbeat_timeout=timeout)
    slow = slow.model_copy(update={"stop_grace": 3.0})
    watchdog, events = await supervise(slow)
    if how == "halted":
        pid = (await events.wait_kind("late", "slow"))[0].pid
    else:
        pid = (await events.wait_kind("healthy", "slow"))[0].pid
        watchdog.groups["slow"].members[0].request_stop("asked to")
    assert pid is not None
    await asyncio.sleep(0.3)  # SIGTERM sent, its handler sleeping
    # When something else SIGKILLs it during the grace
    killed_at = utcnow()
    os.kill(pid, signal.SIGKILL)
    record = (await events.wait_kind(how, "slow"))[0]
    # Then the stop's record says it died of SIGKILL (the watchdog sent only SIGTERM),
    # timed at the death, and there is no `exited`: the watchdog was ending that run
    assert record.pid == pid
    assert record.evidence["signal"] == "SIGTERM"
    assert record.evidence["exit_signal"] == "SIGKILL"
    assert record.evidence["exit_code"] is None
    assert (record.at - killed_at).total_seconds() < 1.0
    assert not events.of("exited", "slow")


async def test_a_stop_that_is_obeyed_records_that_exit(tmp_path: Path, supervise: Any) -> None:
    # Given a program that exits at once on SIGTERM
    watchdog, events = await supervise(
        program("quick", script(tmp_path, "q", BEAT + "import time\nbeat()\ntime.sleep(3600)\n"))
    )
    await events.wait_kind("healthy", "quick")
    # When the watchdog stops it
    watchdog.groups["quick"].members[0].request_stop("asked to")
    stopped = (await events.wait_kind("stopped", "quick"))[0]
    # Then the record shows the SIGTERM sent and the death by it
    assert stopped.evidence["signal"] == "SIGTERM"
    assert stopped.evidence["exit_signal"] == "SIGTERM"
