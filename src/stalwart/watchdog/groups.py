"""Worker-group decisions: replace a failed member or carry on degraded; scale with backlog.

Pure functions of the settings, the group's state and the clock, so each
rule is tested on its own and every decision comes with the reason that is
published alongside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from stalwart.watchdog.config import ProgramSettings

__all__ = ["Decision", "Scaler", "desired_replicas", "member_failure"]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["reconstitute", "degrade"]
    reason: str


def member_failure(
    program: ProgramSettings, live_others: int, now: datetime, restart_delay: float
) -> Decision:
    """What to do when a member of ``program``'s group failed.

    ``live_others`` counts the members still running; ``restart_delay`` is the
    backoff before a fresh member would start. A group never degrades below
    its floor (``min_replicas``, default 1).
    """
    floor = program.floor
    if program.replicas <= 1 and not program.elastic:
        return Decision("reconstitute", "single program: restart it")
    if live_others < floor:
        return Decision(
            "reconstitute", f"{live_others} members left, below min_replicas {floor}: replace it"
        )
    policy = program.on_member_failure
    if policy == "reconstitute":
        return Decision("reconstitute", "on_member_failure = reconstitute: start a fresh member")
    if policy == "degrade":
        return Decision(
            "degrade", f"on_member_failure = degrade: carry on with {live_others} members"
        )
    if program.deadline is None:
        return Decision("reconstitute", "auto with no deadline: start a fresh member")
    ready_at = now + timedelta(seconds=restart_delay + program.startup_time)
    when = f"a fresh member would be ready at {ready_at:%H:%M:%S}"
    if ready_at > program.deadline:
        return Decision(
            "degrade",
            f"{when}, after the deadline {program.deadline:%H:%M:%S}: carry on with "
            f"{live_others} members",
        )
    return Decision("reconstitute", f"{when}, before the deadline {program.deadline:%H:%M:%S}")


def desired_replicas(program: ProgramSettings, backlog: int) -> int:
    """Members needed for ``backlog`` ready messages, within the group's bounds."""
    low = program.min_replicas if program.min_replicas is not None else 1
    high = program.max_replicas if program.max_replicas is not None else program.replicas
    wanted = math.ceil(max(backlog, 0) / program.target_backlog_per_replica)
    return max(low, min(high, wanted))


class Scaler:
    """Applies :func:`desired_replicas` with a cool-down between changes (no flapping)."""

    def __init__(self, program: ProgramSettings) -> None:
        self._program = program
        self._last_change: float | None = None

    def decide(self, current: int, backlog: int, now: float) -> int | None:
        """The new size, or None to stay; a change starts the cool-down."""
        target = desired_replicas(self._program, backlog)
        if target == current:
            return None
        last = self._last_change
        if last is not None and now - last < self._program.scale_cooldown:
            return None
        self._last_change = now
        return target
