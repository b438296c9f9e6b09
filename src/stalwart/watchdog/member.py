"""One supervised instance: spawn, watch, halt, decide, back off, restart.

A member is one slot of a program's group (instance number = slot). Its task
loops over runs of the program; the group's check loop feeds it verdicts
from the probes, the exit future tells it about crashes, and every step is
reported through the group as an event and a state change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from datetime import datetime
from typing import Any, Final, Protocol

from stalwart.envelope import utcnow
from stalwart.events import WatchdogKind
from stalwart.watchdog.config import ProgramSettings
from stalwart.watchdog.groups import Decision
from stalwart.watchdog.probes import HeartbeatProbe, ResourceProbe, Verdict
from stalwart.watchdog.process import Child, ExitStatus, spawn, stop_tree
from stalwart.watchdog.restart import Backoff, Intensity

__all__ = ["LIVE_STATES", "Group", "Member"]

_log = logging.getLogger("stalwart.watchdog")

LIVE_STATES: Final = frozenset({"starting", "running", "backoff"})
_STOP = "stop"


class Group(Protocol):
    """What a member needs of its program's group (a ProgramGroup): declared here,
    so that this module need not import the group's, which imports this one."""

    program: ProgramSettings

    def emit(
        self,
        kind: WatchdogKind,
        member: Member | None,
        reason: str,
        evidence: dict[str, object] | None = None,
        *,
        alarm: bool = False,
    ) -> None: ...

    def state_changed(self, member: Member) -> None: ...

    def child_env(self, member: Member) -> dict[str, str]: ...

    def adopt(self, pgid: int) -> None: ...

    def release(self, pgid: int) -> None: ...

    def decide(self, member: Member, delay: float) -> Decision: ...


class Member:
    """One instance slot of a program and the task that keeps it running."""

    def __init__(self, group: Group, index: int) -> None:
        self.group = group
        self.program = group.program
        self.index = index
        self.state = "starting"
        self.child: Child | None = None
        self.restarts = 0
        self.last_event: str | None = None
        self.last_reason: str | None = None
        self.started_at: datetime | None = None
        self.heartbeat: HeartbeatProbe | None = None
        self.resources: ResourceProbe | None = None
        self.history: deque[tuple[int, float]] = deque(maxlen=60)
        self.backoff = Backoff(self.program.backoff)
        self.intensity = Intensity(self.program.intensity)
        self._stop = asyncio.Event()
        self._stop_reason = ""
        self._interrupt: asyncio.Future[Verdict | str] | None = None
        self._healthy = False
        self._decision: dict[str, Any] = {}
        self.task: asyncio.Task[None] | None = None

    # -- called by the group -------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"{self.program.name}[{self.index}]")

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES and not self._stop.is_set()

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None and self.child.running else None

    def request_stop(self, reason: str) -> None:
        """Stop gracefully (stop signal, grace, then SIGKILL) and do not restart."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()
            self._fire(_STOP)

    def fail(self, verdict: Verdict) -> None:
        """A probe found a failure: halt this run and decide what follows."""
        self._fire(verdict)

    def beat(self, progress: int | None) -> None:
        if self.heartbeat is None or self.child is None or not self.child.running:
            return
        if self.heartbeat.beat(time.monotonic(), progress) and not self._healthy:
            self._mark_healthy("first heartbeat")

    def check(self, now: float) -> None:
        """Run the probes this program asks for; act on the first verdict."""
        if self.state != "running" or self.child is None or not self.child.running:
            return
        program = self.program
        verdict: Verdict | None = None
        if self.resources is not None:
            sample = self.resources.sample(now)
            self.history.append((sample.rss, round(sample.cpu, 1)))
            self.group.state_changed(self)  # fresh figures for status and sparklines
            verdict = self.resources.check(program, sample, now)
        if verdict is None and self.heartbeat is not None:
            if program.heartbeat_timeout is not None:
                verdict = self.heartbeat.late(now, program.heartbeat_timeout, program.startup_time)
            if verdict is None and program.min_rate is not None:
                verdict = self.heartbeat.slow(now, program.min_rate, program.rate_window)
        if verdict is not None:
            self.fail(verdict)
        elif (
            not self._healthy
            and program.heartbeat_timeout is None
            and (now - self.child.started >= min(program.startup_time, program.backoff.reset_after))
        ):
            self._mark_healthy(f"running for {now - self.child.started:.1f} s")
        if self.child.running and self.backoff.stable_for(now - self.child.started):
            _log.debug("%s[%d] stable: backoff reset", program.name, self.index)

    # -- the run loop ---------------------------------------------------------

    def _fire(self, value: Verdict | str) -> None:
        if self._interrupt is not None and not self._interrupt.done():
            self._interrupt.set_result(value)

    def _mark_healthy(self, reason: str) -> None:
        self._healthy = True
        self.group.emit(WatchdogKind.HEALTHY, self, reason)

    def _set(self, state: str) -> None:
        self.state = state
        self.group.state_changed(self)

    async def _run(self) -> None:
        reason = ""
        try:
            while not self._stop.is_set():
                outcome = await self._one_run(reason)
                if outcome is None:
                    return
                reason, evidence, failed = outcome
                if evidence.get("exit_code") in self.program.fatal_exit_codes:
                    self._refused(reason, evidence)
                    return
                if not self._should_restart(failed):
                    self._set("exited" if not failed else "failed")
                    return
                if not await self._decide_and_wait(reason, evidence):
                    return
        finally:
            await self._cleanup()

    async def _one_run(self, previous: str) -> tuple[str, dict[str, Any], bool] | None:
        """Start once and watch; (reason, evidence, failed) when it ended, None when stopped."""
        self._interrupt = asyncio.get_running_loop().create_future()
        self._healthy = False
        try:
            self.child = await spawn(self.program, self.index, self.group.child_env(self))
        except OSError as exc:
            reason = f"cannot start {self.program.command[0]!r}: {exc}"
            self.group.emit(WatchdogKind.EXITED, self, reason, {"error": str(exc)})
            return reason, {"error": str(exc)}, True
        child = self.child
        self.group.adopt(child.pgid)
        self.started_at = utcnow()
        self.heartbeat = HeartbeatProbe(child.started)
        # Sampled whether or not the program has limits: `watchdog status` shows them all.
        self.resources = ResourceProbe(
            child.pid, count_files=self.program.max_open_files is not None
        )
        self._set("running")
        if self.restarts:
            evidence = {"restarts": self.restarts, **self._decision}
            self.group.emit(WatchdogKind.RESTARTED, self, previous, evidence)
        else:
            self.group.emit(WatchdogKind.STARTED, self, "started")
        interrupt = self._interrupt
        waiters: set[asyncio.Future[Any]] = {child.exited, interrupt}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if child.exited.done():
            return await self._exited(child, child.exited.result())
        cause = interrupt.result()
        if isinstance(cause, str):
            await self._halt(child, self._stop_reason, graceful=True)
            return None
        self.group.emit(WatchdogKind(cause.kind), self, cause.reason, cause.evidence)
        await self._halt(child, cause.reason, graceful=False)
        return cause.reason, cause.evidence, True

    async def _exited(
        self, child: Child, status: ExitStatus
    ) -> tuple[str, dict[str, Any], bool] | None:
        evidence: dict[str, Any] = {
            "exit_code": status.code,
            "signal": status.signal,
            "ran_for": round((child.exited_at or time.monotonic()) - child.started, 3),
        }
        reason = status.describe()
        self.group.emit(WatchdogKind.EXITED, self, reason, evidence)
        if child.tree():  # leftovers of the dead leader must not linger
            await stop_tree(child, self.program.signal, min(self.program.stop_grace, 1.0))
        self.group.release(child.pgid)
        if self._stop.is_set():
            self._set("stopped")
            return None
        return reason, evidence, not status.clean

    async def _halt(self, child: Child, reason: str, *, graceful: bool) -> None:
        self._set("stopping")
        sig = self.program.signal
        # a failed run gets less time to clean up: it is already misbehaving
        grace = self.program.stop_grace if graceful else min(self.program.stop_grace, 2.0)
        began = time.monotonic()
        killed = await stop_tree(child, sig, grace)
        self.group.release(child.pgid)
        evidence: dict[str, Any] = {
            "signal": "SIGKILL" if killed else sig.name,
            "took": round(time.monotonic() - began, 3),
        }
        # How it actually ended, which need not be by the signal sent: a SIGKILL from
        # elsewhere (an operator, the OOM killer) during the grace ends it too.
        ended = _status(child)
        if ended is not None:
            evidence.update(exit_code=ended.code, exit_signal=ended.signal)
        if graceful:
            self._set("stopped")
            self.group.emit(WatchdogKind.STOPPED, self, reason or "stopped", evidence)
        else:
            self.group.emit(WatchdogKind.HALTED, self, reason, evidence)

    def _refused(self, reason: str, evidence: dict[str, Any]) -> None:
        """The program refused its configuration: a restart would only refuse it again."""
        self._set("fatal")
        self.group.emit(
            WatchdogKind.FATAL,
            self,
            f"{reason}: a configuration error, not restarted; fix what its output says "
            "(stalwart.toml, the command line, a port in use), then restart the watchdog",
            {**evidence, "config_error": True},
            alarm=True,
        )

    def _should_restart(self, failed: bool) -> bool:
        policy = self.program.restart
        return policy == "always" or (policy == "on-failure" and failed)

    async def _decide_and_wait(self, reason: str, evidence: dict[str, Any]) -> bool:
        """Apply intensity, group policy and backoff; True to run again."""
        decided = time.monotonic()
        if self.intensity.exceeded(decided):
            limit = self.program.intensity
            self._set("fatal")
            self.group.emit(
                WatchdogKind.FATAL,
                self,
                f"{self.intensity.count(decided)} restarts within {limit.within:g} s "
                f"(max_restarts {limit.max_restarts}); last failure: {reason}",
                evidence,
                alarm=True,
            )
            return False
        delay = self.backoff.next_delay()
        decision = self.group.decide(self, delay)
        if decision.action == "degrade":
            self._set("degraded")
            self.group.emit(WatchdogKind.DEGRADED, self, decision.reason, {"failure": reason})
            return False
        self.intensity.record(decided)
        self.restarts += 1
        self._set("backoff")
        exited_at = self.child.exited_at if self.child is not None else None
        _log.info(
            "%s[%d] restart %d in %.2f s: %s (%s)",
            self.program.name,
            self.index,
            self.restarts,
            delay,
            reason,
            decision.reason,
        )
        self.last_reason = reason
        self._decision = {
            "delay": round(delay, 3),
            "decision": decision.reason,
            "decided_in": round(decided - exited_at, 4) if exited_at is not None else None,
        }
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        if self._stop.is_set():
            self._set("stopped")
            self.group.emit(WatchdogKind.STOPPED, self, self._stop_reason or "stopped")
            return False
        return True

    async def _cleanup(self) -> None:
        """On cancellation (watchdog shutting down hard) nothing may be left running."""
        child = self.child
        if child is not None and (child.running or child.tree()):
            with contextlib.suppress(Exception):
                await asyncio.shield(stop_tree(child, signal.SIGKILL, 0.0))
            self.group.release(child.pgid)
        if child is not None and not child.exited.done():
            child.exited.cancel()


def _status(child: Child) -> ExitStatus | None:
    """How ``child`` ended; None while it runs (or if its wait failed)."""
    done = child.exited
    if not done.done() or done.cancelled() or done.exception() is not None:
        return None
    return done.result()
