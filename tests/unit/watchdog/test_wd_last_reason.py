"""A program's last reason keeps why it last went wrong through the restart that follows."""

from __future__ import annotations

from typing import Any, cast

from stalwart.events import WatchdogEvent, WatchdogKind
from stalwart.watchdog.config import ProgramSettings
from stalwart.watchdog.member import Member
from stalwart.watchdog.program_group import ProgramGroup


class _Watchdog:
    name = "wd"

    def __init__(self) -> None:
        self.events: list[WatchdogEvent] = []

    def emit(self, event: WatchdogEvent) -> None:
        self.events.append(event)

    def record(self, member: Member) -> None:
        pass


def test_a_kill_stays_the_last_reason_after_restart_and_first_heartbeat() -> None:
    # Given a member that was killed, then restarted and healthy again
    watchdog = _Watchdog()
    group = ProgramGroup(ProgramSettings(name="qa", command=["x"]), cast(Any, watchdog))
    member = Member(group, 0)
    group.emit(WatchdogKind.STARTED, member, "started")
    assert member.last_reason == "started"  # nothing went wrong yet: the start is the reason
    group.emit(WatchdogKind.EXITED, member, "killed by SIGKILL after 3.0 s")
    group.emit(WatchdogKind.STARTED, member, "restarted")
    group.emit(WatchdogKind.HEALTHY, member, "first heartbeat")
    # Then the last event is the recovery, but the last reason is still the kill
    assert member.last_event == "healthy"
    assert member.last_reason == "killed by SIGKILL after 3.0 s"
    # And every event still carries its own reason
    assert [e.reason for e in watchdog.events][-1] == "first heartbeat"
    # When it goes wrong again, Then that becomes the last reason
    group.emit(WatchdogKind.LATE, member, "no heartbeat for 10 s")
    assert member.last_reason == "no heartbeat for 10 s"
