"""The four failure modes, each with real child processes: detected, halted, restarted."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from wd_support import BEAT, program, script, wait_for_path

from waiting import until


@pytest.mark.parametrize(
    ("body", "evidence"),
    [
        ("import sys, time\ntime.sleep(0.2)\nsys.exit(3)\n", {"exit_code": 3, "signal": None}),
        (
            "import os, signal, time\ntime.sleep(0.2)\nos.kill(os.getpid(), signal.SIGKILL)\n",
            {"exit_code": None, "signal": "SIGKILL"},
        ),
    ],
    ids=["exit-code", "signal"],
)
async def test_abnormal_exit_is_restarted_with_exit_evidence(
    tmp_path: Path, supervise: Any, body: str, evidence: dict[str, Any]
) -> None:
    # Given a program that dies abnormally after a moment
    _watchdog, events = await supervise(program("crasher", script(tmp_path, "crash", body)))
    # When it dies
    restarted = (await events.wait_kind("restarted", "crasher"))[0]
    # Then the exit is published with its code or signal, and the restart decision was fast
    exited = events.of("exited", "crasher")[0]
    assert {k: exited.evidence[k] for k in evidence} == evidence
    assert restarted.reason == exited.reason
    assert restarted.evidence["decided_in"] < 0.2
    assert restarted.restarts == 1
    assert restarted.pid != exited.pid


async def test_hang_without_heartbeat_is_halted_and_restarted(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a program that beats a few times, then hangs (alive, silent)
    body = (
        BEAT
        + "import time\nfor _ in range(3):\n    beat()\n    time.sleep(0.1)\ntime.sleep(3600)\n"
    )
    cmd = script(tmp_path, "hang", body)
    _watchdog, events = await supervise(program("hanger", cmd, heartbeat_timeout=0.6))
    # When it stops beating
    late = (await events.wait_kind("late", "hanger"))[0]
    # Then it is reported late with how long it was silent, halted, and restarted
    assert late.evidence["beats"] >= 1
    assert late.evidence["silent_for"] >= 0.6  # rounded to the ms
    assert late.evidence["silent_for"] < 0.6 + 1.0
    await events.wait_kind("halted", "hanger")
    restarted = (await events.wait_kind("restarted", "hanger"))[0]
    assert "no heartbeat" in restarted.reason
    assert events.of("healthy", "hanger"), "the first beat marks the program healthy"


async def test_slow_progress_is_halted_and_restarted(tmp_path: Path, supervise: Any) -> None:
    # Given a program whose progress counter stalls while it keeps beating
    body = BEAT + (
        "import time\ndone = 0\nfor i in range(200):\n"
        "    done += 50 if i < 5 else 0\n    beat(done)\n    time.sleep(0.05)\n"
    )
    cmd = script(tmp_path, "slow", body)
    prog = program("sloth", cmd, heartbeat_timeout=2.0, min_rate=100.0, rate_window=0.5)
    _watchdog, events = await supervise(prog)
    # When its rate falls below min_rate over the window
    slow = (await events.wait_kind("slow", "sloth"))[0]
    # Then the rate is the evidence, and it is halted and restarted, not reported late
    assert slow.evidence["rate"] < 100.0
    assert slow.evidence["window"] == 0.5
    assert slow.evidence["progress"] == 250
    await events.wait_kind("restarted", "sloth")
    assert not events.of("late", "sloth")


async def test_memory_leak_is_runaway(tmp_path: Path, supervise: Any) -> None:
    # Given a program that leaks memory
    body = (
        "import time\nhog = []\n"
        "while True:\n    hog.append(bytearray(8 << 20))\n    time.sleep(0.05)\n"
    )
    cmd = script(tmp_path, "leak", body)
    _watchdog, events = await supervise(program("leaker", cmd, max_memory="120MiB"))
    # When its resident memory crosses max_memory
    runaway = (await events.wait_kind("runaway", "leaker"))[0]
    # Then the RSS is the evidence, and it is halted and restarted
    assert runaway.evidence["limit"] == "max_memory"
    assert runaway.evidence["rss"] > 120 * 2**20
    await events.wait_kind("restarted", "leaker")


async def test_cpu_spin_is_runaway_after_duration(tmp_path: Path, supervise: Any) -> None:
    # Given a program that spins the CPU (a low limit: the test machine may be busy)
    cmd = script(tmp_path, "spin", "while True:\n    pass\n")
    prog = program("spinner", cmd, max_cpu=5.0, cpu_duration=0.4, check_interval=0.15)
    _watchdog, events = await supervise(prog)
    # When it stays above max_cpu for cpu_duration
    runaway = (await events.wait_kind("runaway", "spinner", timeout=15.0))[0]
    # Then CPU and duration are the evidence
    assert runaway.evidence["limit"] == "max_cpu"
    assert runaway.evidence["cpu"] > 5.0
    assert runaway.evidence["for"] >= 0.4
    halted = (await events.wait_kind("halted", "spinner"))[0]
    assert halted.evidence["signal"] in {"SIGTERM", "SIGKILL"}


async def test_fork_bomb_is_runaway_and_whole_tree_is_halted(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a program that forks children, each recorded in a file
    pids = tmp_path / "pids"
    body = (
        "import os, time, subprocess, sys\n"
        f"out = open({str(pids)!r}, 'a')\n"
        "for _ in range(5):\n"
        "    p = subprocess.Popen(['sleep', '600'])\n"
        "    out.write(f'{p.pid}\\n'); out.flush()\n"
        "    time.sleep(0.05)\n"
        "time.sleep(600)\n"
    )
    cmd = script(tmp_path, "forker", body)
    _watchdog, events = await supervise(program("forker", cmd, max_children=3))
    # When the tree grows past max_children
    runaway = (await events.wait_kind("runaway", "forker"))[0]
    await events.wait_kind("halted", "forker")
    # Then the children count is the evidence and none of the children survives
    assert runaway.evidence["limit"] == "max_children"
    assert runaway.evidence["children"] > 3
    import psutil

    recorded = [int(p) for p in pids.read_text().split()]
    alive = [
        p
        for p in recorded[:4]
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == []


async def test_stop_escalates_to_sigkill_for_a_program_ignoring_sigterm(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a program that ignores SIGTERM (and says so in a file once it does)
    ready = tmp_path / "ready"
    body = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(ready)!r}, 'w').close()\ntime.sleep(600)\n"
    )
    cmd = script(tmp_path, "stubborn", body)
    watchdog, events = await supervise(program("stubborn", cmd, stop_grace=0.3))
    await wait_for_path(ready)
    member = watchdog.groups["stubborn"].members[0]
    pid = member.pid
    # When it is stopped
    member.request_stop("test")
    stopped = (await events.wait_kind("stopped", "stubborn"))[0]
    # Then the grace ran out and SIGKILL ended it
    assert stopped.evidence["signal"] == "SIGKILL"
    assert member.state == "stopped"
    import psutil

    assert not psutil.pid_exists(pid)


async def test_systemd_gets_ready_and_watchdog_pings(
    tmp_path: Path, supervise: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given systemd's notify socket and WatchdogSec=0.4 s in the environment
    import socket

    path = tmp_path / "notify.sock"
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(path))
    systemd.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        # When the watchdog runs for a while
        await supervise(program("idle", ["sleep", "60"]))
        got: list[bytes] = []

        def heard() -> list[bytes]:
            with contextlib.suppress(BlockingIOError):
                got.append(systemd.recv(256))
            return got

        await until(heard, 10.0, "two WATCHDOG=1", accept=lambda g: g.count(b"WATCHDOG=1") >= 2)
        # Then systemd heard READY=1 first, then WATCHDOG=1 every half interval
        assert got[0].startswith(b"READY=1")
        assert got.count(b"WATCHDOG=1") >= 2
    finally:
        systemd.close()
