"""Live updates: one bus subscription fanned out to every viewer over SSE.

The hub consumes an ephemeral queue bound to ``#`` on any transport and, every
``batch_interval`` seconds, hands the messages seen since the last tick to
each viewer as one batch. Each viewer has a bounded queue of batches: a
viewer too slow to keep up loses whole batches, never blocks the hub or the
other viewers, and the loss is counted (per viewer and in total) and told to
the viewer so the page can refresh instead of showing a silent gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stalwart.bus import Delivery, QueueSpec, Transport, consume_forever
from stalwart.envelope import Envelope
from stalwart.topics import matches

__all__ = ["LiveHub", "TooManyStreams", "Viewer", "summarise"]

_log = logging.getLogger("stalwart.dashboard.live")
_CLOSED: list[dict[str, Any]] = []  # sentinel batch: the hub closed


def summarise(envelope: Envelope) -> dict[str, Any]:
    """The few fields a live row needs (never the token, never the whole body)."""
    return {
        "id": envelope.id,
        "topic": envelope.topic,
        "kind": envelope.kind,
        "sender": envelope.sender,
        "created_at": envelope.created_at.isoformat(),
        "correlation_id": envelope.correlation_id,
        "infra": envelope.topic == "sys.lifecycle" or envelope.topic.startswith("sys.heartbeat."),
    }


class TooManyStreams(Exception):
    """A client already holds as many live streams as it may."""


@dataclass(eq=False)
class Viewer:
    """One connected browser: its pattern, its bounded queue, its losses."""

    pattern: str
    queue: asyncio.Queue[list[dict[str, Any]]]
    infra: bool = False
    client: str = ""
    dropped: int = 0
    delivered: int = 0
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])


class LiveHub:
    """Fans bus traffic out to viewers; owns its consumer and ticker tasks."""

    def __init__(
        self,
        transport: Transport | None,
        *,
        queue_size: int = 256,
        batch_interval: float = 0.1,
        per_client: int = 16,
        name: str | None = None,
    ) -> None:
        self._transport = transport
        self._queue_size = queue_size
        self._interval = batch_interval
        self.per_client = per_client
        self._queue = name or f"dashboard-live-{uuid.uuid4().hex[:12]}"
        self._viewers: set[Viewer] = set()
        self._pending: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.seen = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.newest: datetime | None = None
        self.connected = asyncio.Event()
        self.observers: list[Callable[[Envelope], None]] = []  # see every message (metrics)

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def streams_of(self, client: str) -> int:
        """Live streams ``client`` holds now."""
        return sum(1 for v in self._viewers if v.client == client)

    async def start(self) -> None:
        """Start the ticker and, with a transport, the bus consumer."""
        self._tasks.append(asyncio.create_task(self._tick(), name="dashboard-live-tick"))
        if self._transport is not None:
            self._tasks.append(
                asyncio.create_task(self._consume(self._transport), name="dashboard-live-bus")
            )

    def end_streams(self) -> None:
        """End every viewer's stream now (the server is stopping), keep the tasks."""
        self._closed = True
        for viewer in list(self._viewers):
            self._offer_batch(viewer, _CLOSED)

    async def close(self) -> None:
        """Stop the tasks and end every viewer's stream."""
        self.end_streams()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                _log.exception("live task %s had failed", task.get_name())
        self._tasks.clear()

    def offer(self, envelope: Envelope) -> None:
        """Take one message from the bus (or from a test) for the next batch."""
        self.seen += 1
        for observe in self.observers:
            observe(envelope)
        if self.newest is None or envelope.created_at > self.newest:
            self.newest = envelope.created_at
        if self._viewers:
            self._pending.append(summarise(envelope))

    def flush(self) -> None:
        """Hand the pending messages to every viewer whose pattern they match."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        plain = [m for m in batch if not m["infra"]]
        for viewer in self._viewers:
            source = batch if viewer.infra else plain
            if viewer.pattern == "#":
                mine = source
            else:
                mine = [m for m in source if matches(viewer.pattern, m["topic"])]
            if mine:
                self._offer_batch(viewer, mine)

    def _offer_batch(self, viewer: Viewer, batch: list[dict[str, Any]]) -> None:
        try:
            viewer.queue.put_nowait(batch)
        except asyncio.QueueFull:
            if batch is _CLOSED:  # make room: the end of stream must get through
                viewer.queue.get_nowait()
                viewer.queue.put_nowait(batch)
                return
            viewer.dropped += len(batch)
            self.dropped += len(batch)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, pattern: str = "#", *, infra: bool = False, client: str = ""
    ) -> AsyncIterator[Viewer]:
        """A viewer registered for the duration of the ``async with``.

        ``infra`` includes heartbeats and lifecycle batches, which pages do not
        need. Raises TooManyStreams when ``client`` already holds ``per_client``.
        """
        if client and self.streams_of(client) >= self.per_client:
            raise TooManyStreams(client)
        viewer = Viewer(
            pattern=pattern,
            queue=asyncio.Queue(maxsize=self._queue_size),
            infra=infra,
            client=client,
        )
        self._viewers.add(viewer)
        try:
            yield viewer
        finally:
            self._viewers.discard(viewer)

    async def stream(self, viewer: Viewer, keepalive: float = 15.0) -> AsyncIterator[str]:
        """SSE frames for ``viewer``: ``messages`` batches, ``dropped`` notices, pings."""
        yield f"event: hello\ndata: {json.dumps({'viewer': viewer.id})}\n\n"
        reported = 0
        while not self._closed:
            try:
                batch = await asyncio.wait_for(viewer.queue.get(), timeout=keepalive)
            except TimeoutError:
                yield ": ping\n\n"
                continue
            if batch is _CLOSED:
                return
            if viewer.dropped != reported:
                reported = viewer.dropped
                yield f"event: dropped\ndata: {json.dumps({'dropped': reported})}\n\n"
            viewer.delivered += len(batch)
            yield f"event: messages\ndata: {json.dumps(batch)}\n\n"

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.flush()

    async def _consume(self, transport: Transport) -> None:
        """Consume the live queue for good (:func:`consume_forever`), keeping
        ``connected`` and ``last_error`` for the page.

        Acks are settled by a second task in batches, so the feed never waits
        for one ack's commit before taking the next message.
        """
        settled: asyncio.Queue[Delivery] = asyncio.Queue()
        acker = asyncio.create_task(self._ack_batches(settled), name="dashboard-live-ack")
        deliveries = consume_forever(
            transport,
            QueueSpec(name=self._queue, patterns=("#",), ephemeral=True, max_attempts=1),
            1024,
            on_state=self._consumer_state,
            label="live feed",
        )
        try:
            async with contextlib.aclosing(deliveries):
                async for delivery in deliveries:
                    if delivery.envelope is not None:
                        self.offer(delivery.envelope)
                    settled.put_nowait(delivery)
        finally:
            acker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acker

    def _consumer_state(self, error: str | None) -> None:
        self.last_error = error
        if error is None:
            self.connected.set()
        else:
            self.connected.clear()

    @staticmethod
    async def _ack_batches(settled: asyncio.Queue[Delivery]) -> None:
        while True:
            batch = [await settled.get()]
            while not settled.empty() and len(batch) < 512:
                batch.append(settled.get_nowait())
            results = await asyncio.gather(*(d.ack() for d in batch), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                _log.warning("could not ack %d live deliveries: %s", len(failed), failed[0])
