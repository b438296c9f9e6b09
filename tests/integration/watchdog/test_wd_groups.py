"""Worker groups: a failed member is replaced or the group carries on degraded, by policy
and deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from wd_support import program, script

# Instance 0 crashes on its first run only; every other run and instance keeps going.
FLAKY = """
import os, sys, time
marker = os.path.join({tmp!r}, "crashed-" + os.environ["STALWART_INSTANCE"])
if os.environ["STALWART_INSTANCE"] == "0" and not os.path.exists(marker):
    open(marker, "w").close()
    time.sleep(0.3)
    sys.exit(1)
time.sleep(600)
"""


def _group(tmp_path: Path, **fields: Any) -> Any:
    cmd = script(tmp_path, "flaky", FLAKY.format(tmp=str(tmp_path)))
    return program("workers", cmd, replicas=3, **fields)


async def test_auto_reconstitutes_when_a_restart_meets_the_deadline(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a group of 3 whose deadline is an hour away
    deadline = datetime.now(UTC) + timedelta(hours=1)
    watchdog, events = await supervise(
        _group(tmp_path, on_member_failure="auto", deadline=deadline, startup_time=1.0)
    )
    # When member 0 fails
    restarted = (await events.wait_kind("restarted", "workers"))[0]
    # Then a fresh member replaces it, and the published reason cites the deadline
    assert restarted.instance == 0
    assert "before the deadline" in restarted.evidence["decision"]
    assert not events.of("degraded", "workers")
    await events.wait(lambda e: len(watchdog.groups["workers"].live()) == 3, timeout=5.0)


async def test_auto_degrades_when_a_restart_would_miss_the_deadline(
    tmp_path: Path, supervise: Any
) -> None:
    # Given a group of 3 whose deadline is closer than a fresh member's start-up time
    deadline = datetime.now(UTC) + timedelta(seconds=3)
    watchdog, events = await supervise(
        _group(tmp_path, on_member_failure="auto", deadline=deadline, startup_time=30.0)
    )
    # When member 0 fails
    degraded = (await events.wait_kind("degraded", "workers"))[0]
    # Then the group carries on with 2 members and says why
    assert degraded.instance == 0
    assert "after the deadline" in degraded.reason
    assert "carry on with 2 members" in degraded.reason
    assert degraded.evidence["failure"] == "exit code 1"
    assert not events.of("restarted", "workers")
    assert sorted(s for _, _, s, _ in watchdog.states()) == ["degraded", "running", "running"]


async def test_degrade_never_goes_below_min_replicas(tmp_path: Path, supervise: Any) -> None:
    # Given a degrade policy, but a floor of 3 members out of 3
    _watchdog, events = await supervise(
        _group(tmp_path, on_member_failure="degrade", min_replicas=3)
    )
    # When member 0 fails
    restarted = (await events.wait_kind("restarted", "workers"))[0]
    # Then it is replaced anyway, because the group would drop below its floor
    assert "below min_replicas 3" in restarted.evidence["decision"]


async def test_degrade_policy_carries_on_above_the_floor(tmp_path: Path, supervise: Any) -> None:
    # Given a degrade policy with the default floor of 1
    watchdog, events = await supervise(_group(tmp_path, on_member_failure="degrade"))
    # When member 0 fails
    degraded = (await events.wait_kind("degraded", "workers"))[0]
    # Then the group carries on degraded
    assert "on_member_failure = degrade" in degraded.reason
    assert len(watchdog.groups["workers"].live()) == 2
