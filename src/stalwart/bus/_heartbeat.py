"""Periodic heartbeats of one instance on ``sys.heartbeat.<service>``.

Service instances send them, and so does the persister (``stalwart store persist``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from stalwart.bus._transport import Transport
from stalwart.envelope import Envelope, utcnow
from stalwart.messages import Heartbeat, heartbeat_topic

__all__ = ["Counters", "HeartbeatSender"]

_log = logging.getLogger("stalwart.bus.heartbeat")


@dataclass
class Counters:
    """What a heartbeat reports about the instance's work."""

    inflight: int = 0
    processed: int = 0
    failed: int = 0
    progress: int | None = None
    started_at: datetime = field(default_factory=utcnow)
    started_mono: float = field(default_factory=time.monotonic)


class HeartbeatSender:
    """Publishes a heartbeat every ``interval`` seconds from one owned task.

    ``alive``, when given, is asked before each beat: while it says False the
    beats are withheld, so that a watchdog halts an instance that still runs
    but no longer gets on with its work.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        service: str,
        site: str,
        instance: str,
        sender: str,
        interval: float,
        counters: Counters,
        patterns: list[str],
        token: str | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self._transport = transport
        self._token = token  # lets consumers tell our heartbeats from a forger's
        self._service = service
        self._site = site
        self._instance = instance
        self._sender = sender
        self._interval = interval
        self._counters = counters
        self._patterns = patterns
        self._alive = alive
        self._withheld = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"heartbeat:{self._instance}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.beat(stopping=True)

    async def beat(self, *, stopping: bool = False) -> None:
        c = self._counters
        body = Heartbeat(
            service=self._service,
            site=self._site,
            instance=self._instance,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=c.started_at,
            uptime=round(time.monotonic() - c.started_mono, 3),
            interval=self._interval,
            inflight=c.inflight,
            processed=c.processed,
            failed=c.failed,
            progress=c.progress,
            patterns=self._patterns,
            stopping=stopping,
        )
        envelope = Envelope.new(
            heartbeat_topic(self._service),
            body,
            sender=self._sender,
            ttl=max(30.0, 10 * self._interval),
            token=self._token,
        )
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the publish completes, and stop() would hang.
            async with asyncio.timeout(self._interval * 5):
                await self._transport.publish([envelope])
        except Exception as exc:  # a missed beat is reported by its absence
            _log.warning("heartbeat of %s not sent: %s", self._instance, exc)

    async def _run(self) -> None:
        while True:
            alive = self._alive is None or self._alive()
            if alive:
                await self.beat()
            elif not self._withheld:
                _log.warning("%s makes no progress: heartbeats withheld", self._instance)
            self._withheld = not alive
            await asyncio.sleep(self._interval)
