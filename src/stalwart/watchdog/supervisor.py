"""The watchdog: supervises every configured program and reports what it sees.

Composition happens here: the guardian (no orphans if the watchdog dies),
the beat socket and the bus link (heartbeats in, events out), the state
writer (``watchdog_programs``), systemd notifications, and one
:class:`ProgramGroup` per program with its members and its check loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
from pydantic import ValidationError

from stalwart.backoff import Backoff
from stalwart.bus import BusLink, QueueSpec, QueueStats, Transport, open_bus, open_transport
from stalwart.config import Settings
from stalwart.envelope import Envelope, default_sender, utcnow
from stalwart.events import WatchdogEvent, WatchdogKind, event_envelope
from stalwart.messages import HEARTBEAT_PREFIX, Heartbeat
from stalwart.store.engine import make_engine
from stalwart.watchdog._disk import watch_disk
from stalwart.watchdog._guard import Guardian
from stalwart.watchdog._store import ProgramState, StateWriter
from stalwart.watchdog.beat import BeatServer
from stalwart.watchdog.config import WatchdogSettings
from stalwart.watchdog.member import Member
from stalwart.watchdog.probes import DiskProbe
from stalwart.watchdog.process import become_subreaper, reap_orphans
from stalwart.watchdog.program_group import ProgramGroup
from stalwart.watchdog.sdnotify import Notifier

__all__ = ["Watchdog", "serve"]

_log = logging.getLogger("stalwart.watchdog")
EventListener = Callable[[WatchdogEvent], None]


class Watchdog:
    """Supervises the programs of one ``[watchdog]`` table until closed.

    ``bus`` is a URL or a factory of (unstarted) transports; without it events are
    only logged and given to listeners. ``store_url`` enables ``watchdog_programs``.
    """

    def __init__(
        self,
        settings: WatchdogSettings,
        *,
        socket_path: Path,
        bus: Callable[[], Transport] | str | None = None,
        store_url: str | None = None,
        site: str = "local",
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.socket_path = socket_path.absolute()
        self.host = socket.gethostname()
        self._sender = default_sender(settings.name, site)
        self._token = os.environ.get("STALWART_TOKEN")  # signs events, as services do
        self._listeners: list[EventListener] = []
        if isinstance(bus, str):
            url = bus
            bus = lambda: open_transport(url)  # noqa: E731
        self._bus = self._link(bus(), settings.max_pending_events) if bus is not None else None
        self._engine = make_engine(store_url) if store_url else None
        self._writer = (
            StateWriter(self._engine, self.host, self.name, settings.state_interval)
            if self._engine is not None
            else None
        )
        shared = any(p.user for p in settings.programs)
        self._beats = BeatServer(self.socket_path, self._on_beat, shared=shared)
        self._notifier = Notifier()
        self._guardian: Guardian | None = None
        self._pgids: set[int] = set()
        self._released: set[int] = set()
        self.groups: dict[str, ProgramGroup] = {}
        self._pinger: asyncio.Task[None] | None = None
        self._disk: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Watchdog:
        """Everything from ``stalwart.toml``: the bus, the store and the ``[watchdog]`` table."""
        section = settings.section("watchdog", WatchdogSettings)
        return cls(
            section,
            socket_path=section.socket or settings.home / "watchdog.sock",
            bus=lambda: open_bus(settings),
            store_url=settings.store.url,
            site=settings.site,
        )

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener`` with every event, in the watchdog's own loop."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Start supervising; raises if the beat socket cannot be bound."""
        if self.settings.subreaper:
            become_subreaper()
        self._guardian = Guardian()
        await self._beats.start()
        if self._bus is not None:
            await self._bus.open(wait=False)  # supervision never waits on the bus
        if self._writer is not None:
            await self._writer.start()
        for program in self.settings.programs:
            group = self.groups[program.name] = ProgramGroup(program, self)
            await group.start()
        if self.settings.disk.paths:
            probe = DiskProbe(self.settings.disk)
            self._disk = asyncio.create_task(watch_disk(probe, self.emit, self.name))
        self._notifier.ready(f"supervising {len(self.groups)} programs")
        if self._notifier.watchdog_interval:
            self._pinger = asyncio.create_task(self._ping(self._notifier.watchdog_interval))
        _log.info("watchdog %s supervising %d programs", self.name, len(self.groups))

    async def close(self) -> None:
        """Stop every program gracefully, flush events and states, release everything."""
        self._notifier.stopping()
        for task in (self._pinger, self._disk):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await asyncio.gather(*(g.stop("watchdog stopping") for g in self.groups.values()))
        self.reap()
        if self._bus is not None:
            await self._bus.close(flush_timeout=3.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._bus.transport.close(), timeout=15.0)
        if self._writer is not None:
            await self._writer.close()
        if self._engine is not None:
            await self._engine.dispose()
        await self._beats.close()
        if self._guardian is not None:
            await asyncio.to_thread(self._guardian.close)

    async def __aenter__(self) -> Watchdog:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- events and states ----------------------------------------------------

    def emit(self, event: WatchdogEvent) -> None:
        level = logging.WARNING if event.event in _ALARMING else logging.INFO
        _log.log(
            level,
            "event=%s program=%s instance=%s pid=%s reason=%r",
            event.event.value,
            event.program,
            event.instance,
            event.pid,
            event.reason,
        )
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                _log.exception("event listener failed")
        if self._bus is not None:
            self._bus.emit(event_envelope(event, self._sender, self._token))

    def record(self, member: Member) -> None:
        if self._writer is None:
            return
        sample = member.resources.last if member.resources is not None else None
        self._writer.update(
            ProgramState(
                host=self.host,
                watchdog=self.name,
                program=member.program.name,
                instance=member.index,
                state=member.state,
                updated_at=utcnow(),
                pid=member.pid,
                restarts=member.restarts,
                last_event=member.last_event,
                last_reason=member.last_reason,
                started_at=member.started_at,
                rss=sample.rss if sample else None,
                cpu=sample.cpu if sample else None,
                history=list(member.history),
            )
        )

    def states(self) -> list[tuple[str, int, str, int]]:
        """(program, instance, state, restarts) of every member, for quick checks."""
        return [
            (g.program.name, m.index, m.state, m.restarts)
            for g in self.groups.values()
            for m in g.members.values()
        ]

    async def queue_stats(self, queue: str) -> QueueStats | None:
        return None if self._bus is None else await self._bus.queue_stats(queue)

    # -- heartbeats, process groups -------------------------------------------

    def _on_beat(self, program: str, instance: int, progress: int | None) -> None:
        group = self.groups.get(program)
        member = group.members.get(instance) if group is not None else None
        if member is None:
            _log.debug("beat for unknown %s[%d]", program, instance)
            return
        member.beat(progress)

    def _link(self, transport: Transport, max_pending: int) -> BusLink:
        """Events out (kept while the bus is away) and this host's service heartbeats in."""
        link = BusLink(
            transport, backoff=Backoff(0.5, 30.0), max_pending=max_pending, name="watchdog-bus"
        )
        host = re.sub(r"[^a-z0-9_-]", "-", self.host.lower())
        queue = f"watchdog-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        beats = QueueSpec(queue, (f"{HEARTBEAT_PREFIX}.#",), max_attempts=1, ephemeral=True)
        link.subscribe(beats, self._on_heartbeat)
        return link

    def _on_heartbeat(self, envelope: Envelope) -> None:
        try:
            beat = Heartbeat.model_validate(envelope.body)
        except ValidationError as exc:
            _log.warning("ignored malformed heartbeat %s: %s", envelope.id, exc)
            return
        if beat.host != self.host or beat.stopping:
            return
        for group in self.groups.values():
            if group.program.service != beat.service:
                continue
            for member in group.members.values():
                if member.pid is not None and _same_tree(member.pid, beat.pid):
                    member.beat(beat.progress)
                    return

    def adopt(self, pgid: int) -> None:
        self._pgids.add(pgid)
        if self._guardian is not None:
            self._guardian.add(pgid)

    def release(self, pgid: int) -> None:
        if pgid in self._pgids:
            self._pgids.discard(pgid)
            self._released.add(pgid)
            if self._guardian is not None:
                self._guardian.remove(pgid)

    def reap(self) -> None:
        reap_orphans(self._pgids | self._released)
        if len(self._released) > 10_000:
            self._released.clear()

    async def _ping(self, interval: float) -> None:
        while True:
            self._notifier.ping()
            await asyncio.sleep(interval)


async def serve(settings: Settings) -> None:
    """Run a watchdog from ``settings`` until SIGTERM or SIGINT, then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Watchdog.from_settings(settings):
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


_ALARMING = frozenset(
    {
        WatchdogKind.LATE,
        WatchdogKind.SLOW,
        WatchdogKind.RUNAWAY,
        WatchdogKind.FATAL,
        WatchdogKind.EXITED,
        WatchdogKind.DISK_LOW,
    }
)


def _same_tree(root: int, pid: int) -> bool:
    """True when ``pid`` is ``root`` or one of its descendants (a wrapper script's child)."""
    if pid == root:
        return True
    try:
        return any(p.pid == root for p in psutil.Process(pid).parents())
    except psutil.Error:
        return False
