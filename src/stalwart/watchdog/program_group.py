"""A program's group at run time: its members, its check loop, its elastic scaling.

Members report through the group (events, states, process groups), so a
member knows nothing of the watchdog around it; the group applies the pure
rules of :mod:`stalwart.watchdog.groups` to live members.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from stalwart.bus import QueueStats
from stalwart.events import WatchdogEvent, WatchdogKind
from stalwart.watchdog.beat import ENV_INSTANCE, ENV_PROGRAM, ENV_SOCKET
from stalwart.watchdog.config import ProgramSettings
from stalwart.watchdog.groups import Decision, Scaler, member_failure
from stalwart.watchdog.member import Member

__all__ = ["ProgramGroup", "Supervisor"]

_log = logging.getLogger("stalwart.watchdog")

_ROUTINE = frozenset({WatchdogKind.STARTED, WatchdogKind.HEALTHY, WatchdogKind.SCALED})


class Supervisor(Protocol):
    """What a group needs of the watchdog around it (a Watchdog): declared here,
    so that this module need not import the supervisor's, which imports this one."""

    name: str
    socket_path: Path

    def emit(self, event: WatchdogEvent) -> None: ...

    def record(self, member: Member) -> None: ...

    def adopt(self, pgid: int) -> None: ...

    def release(self, pgid: int) -> None: ...

    def reap(self) -> None: ...

    async def queue_stats(self, queue: str) -> QueueStats | None: ...


class ProgramGroup:
    """All members of one program, its probes' check loop and its elastic scaling."""

    def __init__(self, program: ProgramSettings, watchdog: Supervisor) -> None:
        self.program = program
        self.watchdog = watchdog
        self.members: dict[int, Member] = {}
        self.scaler = Scaler(program) if program.elastic else None
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def _finished(member: Member) -> bool:
        return not member.live and member.task is not None and member.task.done()

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if m.live]

    async def start(self) -> None:
        for _ in range(self.program.replicas):
            self._add()
        self._task = asyncio.create_task(self._checks(), name=f"checks:{self.program.name}")

    async def stop(self, reason: str) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for member in self.members.values():
            member.request_stop(reason)
        tasks = [m.task for m in self.members.values() if m.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.program.stop_grace + 10.0)
            for task in pending:  # a stop that hangs: cancel kills the tree at once
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=10.0)

    def _add(self) -> Member:
        index = 0
        while index in self.members and not self._finished(self.members[index]):
            index += 1  # a slot is reused only once its member's task has ended
        member = Member(self, index)
        self.members[index] = member
        member.start()
        return member

    # -- what members call ---------------------------------------------------

    def emit(
        self,
        kind: WatchdogKind,
        member: Member | None,
        reason: str,
        evidence: dict[str, object] | None = None,
        *,
        alarm: bool = False,
    ) -> None:
        if member is not None:
            member.last_event = kind.value
            # A start or recovery does not replace why it last went wrong (a kill stays).
            if kind not in _ROUTINE or member.last_reason is None:
                member.last_reason = reason
        self.watchdog.emit(
            WatchdogEvent(
                event=kind,
                program=self.program.name,
                instance=member.index if member is not None else None,
                pid=member.child.pid if member is not None and member.child else None,
                state=member.state if member is not None else None,
                reason=reason,
                evidence=dict(evidence or {}),
                restarts=member.restarts if member is not None else 0,
                watchdog=self.watchdog.name,
                alarm=alarm,
            )
        )
        if member is not None:
            self.state_changed(member)

    def state_changed(self, member: Member) -> None:
        self.watchdog.record(member)

    def child_env(self, member: Member) -> dict[str, str]:
        return {
            ENV_SOCKET: str(self.watchdog.socket_path),
            ENV_PROGRAM: self.program.name,
            ENV_INSTANCE: str(member.index),
        }

    def adopt(self, pgid: int) -> None:
        self.watchdog.adopt(pgid)

    def release(self, pgid: int) -> None:
        self.watchdog.release(pgid)

    def decide(self, member: Member, delay: float) -> Decision:
        others = sum(1 for m in self.live() if m is not member)
        return member_failure(self.program, others, datetime.now(UTC), delay)

    # -- the check loop ------------------------------------------------------

    async def _checks(self) -> None:
        interval = self.program.check_interval
        next_scale = 0.0
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for member in list(self.members.values()):
                try:
                    member.check(now)
                except Exception:
                    _log.exception("check of %s[%d] failed", self.program.name, member.index)
            self.watchdog.reap()
            if self.scaler is not None and now >= next_scale:
                next_scale = now + max(interval, 0.5)
                await self._scale(now)

    async def _scale(self, now: float) -> None:
        if self.scaler is None or self.program.service is None:
            return
        stats = await self.watchdog.queue_stats(self.program.service)
        if stats is None:
            return
        live = self.live()
        target = self.scaler.decide(len(live), stats.ready, now)
        if target is None:
            return
        evidence: dict[str, object] = {
            "backlog": stats.ready,
            "inflight": stats.inflight,
            "from": len(live),
            "to": target,
        }
        reason = (
            f"backlog {stats.ready} on {self.program.service}: {len(live)} -> {target} members "
            f"(target {self.program.target_backlog_per_replica} per member)"
        )
        self.emit(WatchdogKind.SCALED, None, reason, evidence)
        for _ in range(target - len(live)):
            self._add()
        for member in sorted(live, key=lambda m: m.index, reverse=True)[
            : max(0, len(live) - target)
        ]:
            member.request_stop("scaled down")
