"""Restart policy, backoff and the intensity limit, with real crashing processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wd_support import program, script

CRASH_NOW = "import sys\nsys.exit(2)\n"
EXIT_CLEAN = "import time\ntime.sleep(0.1)\n"


async def test_backoff_grows_between_restarts(tmp_path: Path, supervise: Any) -> None:
    # Given a program that crashes at once, with a doubling backoff and no jitter
    backoff = {"initial": 0.1, "factor": 2.0, "max": 5.0, "jitter": 0.0, "reset_after": 60.0}
    prog = program(
        "crashy",
        script(tmp_path, "c", CRASH_NOW),
        backoff=backoff,
        intensity={"max_restarts": 10, "within": 60.0},
    )
    _watchdog, events = await supervise(prog)
    # When it has been restarted three times
    restarts = await events.wait_kind("restarted", "crashy", count=3, timeout=20.0)
    # Then each delay doubled
    delays = [e.evidence["delay"] for e in restarts[:3]]
    assert delays == [0.1, 0.2, 0.4]


async def test_intensity_limit_gives_up_with_fatal_alarm(tmp_path: Path, supervise: Any) -> None:
    # Given a program that can never stay up, allowed 3 restarts per minute
    prog = program(
        "doomed", script(tmp_path, "d", CRASH_NOW), intensity={"max_restarts": 3, "within": 60.0}
    )
    watchdog, events = await supervise(prog)
    # When it keeps crashing
    fatal = (await events.wait_kind("fatal", "doomed", timeout=20.0))[0]
    # Then after exactly 3 restarts it is fatal, flagged as an alarm, and left down
    assert len(events.of("restarted", "doomed")) == 3
    assert fatal.alarm is True
    assert "3 restarts within 60 s" in fatal.reason
    assert "exit code 2" in fatal.reason
    assert watchdog.states() == [("doomed", 0, "fatal", 3)]


async def test_on_failure_policy_leaves_a_clean_exit_alone(tmp_path: Path, supervise: Any) -> None:
    # Given a program that finishes its work and exits 0, under restart = "on-failure"
    watchdog, events = await supervise(
        program("oneshot", script(tmp_path, "ok", EXIT_CLEAN), restart="on-failure")
    )
    # When it exits
    exited = (await events.wait_kind("exited", "oneshot"))[0]
    # Then it is not restarted
    assert exited.evidence["exit_code"] == 0
    await events.wait(lambda e: watchdog.states() == [("oneshot", 0, "exited", 0)], timeout=5.0)
    assert not events.of("restarted", "oneshot")


async def test_always_policy_restarts_a_clean_exit(tmp_path: Path, supervise: Any) -> None:
    # Given a program that exits 0 under restart = "always"
    _watchdog, events = await supervise(
        program("looper", script(tmp_path, "ok", EXIT_CLEAN), restart="always")
    )
    # When it exits
    restarted = (await events.wait_kind("restarted", "looper"))[0]
    # Then it is started again
    assert restarted.reason == "exit code 0"


async def test_never_policy_leaves_a_crash_down(tmp_path: Path, supervise: Any) -> None:
    # Given a crashing program under restart = "never"
    watchdog, events = await supervise(
        program("once", script(tmp_path, "c", CRASH_NOW), restart="never")
    )
    # When it crashes
    await events.wait_kind("exited", "once")
    # Then it stays down, marked failed
    await events.wait(lambda e: watchdog.states() == [("once", 0, "failed", 0)], timeout=5.0)
    assert not events.of("restarted", "once")


async def test_a_missing_executable_is_a_failure_not_a_crash_of_the_watchdog(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a program whose command does not exist
    prog = program(
        "ghost", [str(tmp_path / "no-such-program")], intensity={"max_restarts": 1, "within": 60.0}
    )
    _watchdog, events = await supervise(prog)
    # When the watchdog tries to start it
    fatal = (await events.wait_kind("fatal", "ghost"))[0]
    # Then the error is the evidence and the watchdog keeps running
    assert "cannot start" in fatal.reason
    assert "No such file" in events.of("exited", "ghost")[0].evidence["error"]


async def test_a_configuration_error_is_fatal_at_once_and_says_why(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a program that refuses its configuration (exit 78, EX_CONFIG), under "always"
    refuses = script(tmp_path, "cfg", "import sys\nsys.exit(78)\n")
    watchdog, events = await supervise(program("misconfigured", refuses, restart="always"))
    # When it exits
    fatal = (await events.wait_kind("fatal", "misconfigured"))[0]
    # Then it is not restarted: fatal after one run, an alarm saying what to do
    assert not events.of("restarted", "misconfigured")
    assert fatal.alarm is True and fatal.evidence["config_error"] is True
    assert "exit code 78" in fatal.reason and "configuration error" in fatal.reason
    assert watchdog.states() == [("misconfigured", 0, "fatal", 0)]


async def test_other_exit_codes_can_be_made_fatal(tmp_path: Path, supervise: Any) -> None:
    # Given a program whose exit 2 means "bad usage" and is declared fatal
    prog = program(
        "usage", script(tmp_path, "u", CRASH_NOW), restart="always", fatal_exit_codes=[2, 78]
    )
    watchdog, events = await supervise(prog)
    # When it exits 2, Then it stays down
    await events.wait_kind("fatal", "usage")
    assert watchdog.states() == [("usage", 0, "fatal", 0)]
