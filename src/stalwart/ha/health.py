"""Health monitors of critical services and their state machine.

``healthy -> suspect`` on a failed probe; ``suspect -> healthy`` if the next
probe answers (a blip), ``suspect -> recovering`` after ``suspect_after``
more failures; ``recovering`` runs the prescribed strategy (repair, then
fail over) and ends ``healthy`` (maybe on a backup URL) or ``failed``; a
``failed`` service returns to ``healthy`` when it (or a backup) answers again.
Every transition is stored (``ha_monitor_transitions``, ``ha_monitors``) and
published on ``sys.ha.monitor``; a switch of URL also on ``sys.ha.failover``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.bus import redact_url
from stalwart.errors import StalwartError
from stalwart.events import Failover, MonitorTransition
from stalwart.ha._monitor_store import load_monitor, save_transition
from stalwart.ha.config import MonitorSettings
from stalwart.ha.strategies import Outcome, ProbeFn, default_probe, fail_over, recover
from stalwart.service import EventPublisher

__all__ = ["HealthMonitors", "HealthState", "Monitor", "check_transition"]

_log = logging.getLogger("stalwart.ha.health")


class HealthState(enum.StrEnum):
    HEALTHY = "healthy"
    SUSPECT = "suspect"
    RECOVERING = "recovering"
    FAILED = "failed"


_ALLOWED: dict[HealthState, frozenset[HealthState]] = {
    HealthState.HEALTHY: frozenset({HealthState.SUSPECT}),
    HealthState.SUSPECT: frozenset({HealthState.HEALTHY, HealthState.RECOVERING}),
    HealthState.RECOVERING: frozenset({HealthState.HEALTHY, HealthState.FAILED}),
    HealthState.FAILED: frozenset({HealthState.HEALTHY, HealthState.RECOVERING}),
}


def check_transition(current: HealthState, target: HealthState) -> None:
    """Raise ValueError unless ``current -> target`` is a transition of the machine."""
    if target not in _ALLOWED[current]:
        allowed = ", ".join(sorted(_ALLOWED[current]))
        raise ValueError(f"monitor cannot go from {current} to {target}; allowed: {allowed}")


class Monitor:
    """Watches one critical service; :meth:`step` runs one probe cycle."""

    def __init__(
        self,
        settings: MonitorSettings,
        engine: AsyncEngine,
        events: EventPublisher,
        *,
        check: ProbeFn = default_probe,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self._events = events
        self._check = check
        self.state = HealthState.HEALTHY
        self.url = settings.urls[0]
        self._strikes = 0
        self.transitions: list[tuple[HealthState, HealthState, str]] = []

    async def load(self) -> None:
        """Resume the stored active URL (a previous failover) if still configured."""
        row = await load_monitor(self.engine, self.settings.name)
        if row is not None and row["active_url"] in self.settings.urls:
            self.url = row["active_url"]

    async def step(self) -> HealthState:
        """Probe once and move the state machine; returns the new state."""
        result = await self._check(self.settings, self.url)
        if self.state is HealthState.HEALTHY:
            if not result.ok:
                self._strikes = 0
                await self._move(HealthState.SUSPECT, result.detail)
        elif self.state is HealthState.SUSPECT:
            if result.ok:
                await self._move(HealthState.HEALTHY, f"answered again: {result.detail}")
            else:
                self._strikes += 1
                if self._strikes >= self.settings.suspect_after:
                    await self._recover(result.detail)
        elif self.state is HealthState.FAILED:
            if result.ok:
                await self._move(HealthState.HEALTHY, f"came back: {result.detail}")
            else:
                outcome = await fail_over(self.settings, self.url, self._check)
                if outcome.ok:
                    await self._move(HealthState.RECOVERING, "a backup answers")
                    await self._finish(outcome)
        return self.state

    async def _recover(self, why: str) -> None:
        await self._move(HealthState.RECOVERING, f"confirmed down: {why}")
        await self._finish(await recover(self.settings, self.url, self._check))

    async def _finish(self, outcome: Outcome) -> None:
        if not outcome.ok:
            await self._move(HealthState.FAILED, outcome.reason)
            return
        if outcome.failed_over:
            previous, self.url = self.url, outcome.url
            await self._move(HealthState.HEALTHY, outcome.reason)
            body = Failover(
                monitor=self.settings.name,
                kind=self.settings.kind,
                from_url=redact_url(previous),
                to_url=redact_url(outcome.url),
            )
            await self._events.publish(body)
        else:
            await self._move(HealthState.HEALTHY, outcome.reason)

    async def _move(self, target: HealthState, reason: str) -> None:
        check_transition(self.state, target)
        previous, self.state = self.state, target
        self.transitions.append((previous, target, reason))
        _log.info("monitor=%s %s -> %s: %s", self.settings.name, previous, target, reason)
        try:
            await save_transition(
                self.engine,
                name=self.settings.name,
                kind=self.settings.kind,
                from_state=previous.value,
                to_state=target.value,
                reason=reason,
                url=self.url,
                urls=list(self.settings.urls),
            )
        except Exception as exc:  # the store may be the failed service: keep monitoring
            _log.warning("monitor=%s transition not stored: %s", self.settings.name, exc)
        body = MonitorTransition(
            monitor=self.settings.name,
            kind=self.settings.kind,
            from_state=previous.value,
            to_state=target.value,
            reason=reason,
            url=redact_url(self.url),
        )
        await self._events.publish(body)

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every ``interval`` (faster while suspect) until ``stop``."""
        with contextlib.suppress(StalwartError, OSError):
            await self.load()
        while not stop.is_set():
            await self.step()
            pause = self.settings.interval
            if self.state is HealthState.SUSPECT:
                pause = min(pause, 1.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await stop.wait()


class HealthMonitors:
    """Runs every configured monitor in its own owned task."""

    def __init__(
        self,
        monitors: list[MonitorSettings],
        engine: AsyncEngine,
        events: EventPublisher,
        *,
        check: ProbeFn = default_probe,
    ) -> None:
        self.monitors = [Monitor(m, engine, events, check=check) for m in monitors]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(m.run(self._stop), name=f"ha-monitor-{m.settings.name}")
            for m in self.monitors
        ]

    async def stop(self) -> None:
        """Stop every monitor; a probe in flight is cancelled."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                _log.error("monitor task failed: %r", result)
        self._tasks = []
