"""The watchdog's link to the bus: events out, heartbeats in, queue backlogs.

Supervision never waits on the bus. Events go into a bounded in-memory queue
that a background task publishes; while the bus is unreachable they wait
there (the oldest are dropped, with a warning, past ``max_pending``) and the
task reconnects with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import socket
import uuid
from collections import deque
from collections.abc import Callable

from pydantic import ValidationError

from stalwart.bus import QueueSpec, QueueStats, Transport, redact_url
from stalwart.envelope import Envelope
from stalwart.messages import HEARTBEAT_PREFIX, Heartbeat

__all__ = ["BusLink"]

_log = logging.getLogger("stalwart.watchdog.bus")
_BATCH = 100
_TIMEOUT = 15.0


class BusLink:
    """Owns one transport and the tasks that use it; ``close()`` ends them all."""

    def __init__(
        self,
        factory: Callable[[], Transport],
        *,
        on_heartbeat: Callable[[Heartbeat], None] | None,
        max_pending: int = 10_000,
        retry_max: float = 30.0,
    ) -> None:
        self._factory = factory
        self._where = "the bus"
        self._on_heartbeat = on_heartbeat
        self._pending: deque[Envelope] = deque()
        self._max_pending = max_pending
        self._dropped = 0
        self._inflight = 0
        self._stats_failing: set[str] = set()
        self._retry_max = retry_max
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._transport: Transport | None = None
        host = re.sub(r"[^a-z0-9_-]", "-", socket.gethostname().lower())
        self._queue = f"watchdog-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    @property
    def connected(self) -> bool:
        return self._transport is not None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def emit(self, envelope: Envelope) -> None:
        """Queue ``envelope`` for publishing; never blocks, never raises."""
        if len(self._pending) >= self._max_pending:
            # never drop what a publish in flight holds: the oldest after it goes
            del self._pending[min(self._inflight, len(self._pending) - 1)]
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                _log.warning("bus unreachable: dropped %d oldest events", self._dropped)
        self._pending.append(envelope)
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="watchdog-bus")

    async def close(self, flush_timeout: float = 3.0) -> None:
        """Publish what is pending (up to ``flush_timeout``), then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + flush_timeout
        while True:
            if not self._pending or not self.connected or loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)
        if self._pending:
            _log.warning("closing with %d events not published", len(self._pending))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def queue_stats(self, queue: str) -> QueueStats | None:
        """The backlog of ``queue``, or None while the bus is unreachable."""
        transport = self._transport
        if transport is None:
            return None
        try:
            stats = await asyncio.wait_for(transport.queue_stats(queue), timeout=5.0)
        except Exception as exc:
            level = logging.DEBUG if queue in self._stats_failing else logging.WARNING
            self._stats_failing.add(queue)
            _log.log(level, "no backlog for %s yet: %s", queue, exc)
            return None
        self._stats_failing.discard(queue)
        return stats

    async def _run(self) -> None:
        failures = 0
        while True:
            consumer: asyncio.Task[None] | None = None
            transport: Transport | None = None
            try:
                transport = self._factory()
                self._where = redact_url(transport.url)
                await asyncio.wait_for(transport.start(), timeout=_TIMEOUT)
                if self._on_heartbeat is not None:
                    spec = QueueSpec(
                        self._queue, (f"{HEARTBEAT_PREFIX}.#",), max_attempts=1, ephemeral=True
                    )
                    await asyncio.wait_for(transport.declare(spec), timeout=_TIMEOUT)
                    consumer = asyncio.create_task(self._consume(transport))
                self._transport = transport
                if failures:
                    _log.info("bus %s reachable again", self._where)
                failures = 0
                await self._serve(transport, consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                _log.warning("bus %s unavailable: %s", self._where, exc)
            finally:
                self._transport = None
                if consumer is not None:
                    consumer.cancel()
                    with contextlib.suppress(BaseException):
                        await consumer
                if transport is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(transport.close(), timeout=_TIMEOUT)
            cap = min(self._retry_max, 0.5 * 2 ** min(failures, 10))
            await asyncio.sleep(random.uniform(cap / 2, cap))

    async def _serve(self, transport: Transport, consumer: asyncio.Task[None] | None) -> None:
        while True:
            self._wake.clear()
            while self._pending:
                batch = [self._pending[i] for i in range(min(_BATCH, len(self._pending)))]
                self._inflight = len(batch)
                try:
                    await asyncio.wait_for(transport.publish(batch), timeout=_TIMEOUT)
                finally:
                    self._inflight = 0
                for _ in batch:
                    self._pending.popleft()
            if consumer is not None and consumer.done():
                consumer.result()
                raise ConnectionError("heartbeat consumer ended")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    async def _consume(self, transport: Transport) -> None:
        handler = self._on_heartbeat
        if handler is None:
            return
        async for delivery in transport.consume(self._queue, prefetch=256):
            envelope = delivery.envelope
            await delivery.ack()
            if envelope is None:
                continue
            try:
                beat = Heartbeat.model_validate(envelope.body)
            except ValidationError as exc:
                _log.warning("ignored malformed heartbeat %s: %s", envelope.id, exc)
                continue
            handler(beat)
