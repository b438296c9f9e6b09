"""An in-memory stand-in for the bus, so the store benchmark measures the store alone.

It implements just what :class:`~stalwart.store.Persister` uses of the
transport contract: declare, consume with a bounded number of unsettled
deliveries, and ack. Benchmarks only; never a test double for the real bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from stalwart.bus import QueueSpec
from stalwart.envelope import Envelope, encode
from stalwart.errors import DecodeError

__all__ = ["MemoryBus"]


class _Delivery:
    def __init__(self, envelope: Envelope, bus: MemoryBus) -> None:
        self.queue = "stalwart-persist"
        self.attempt = 1
        self.raw = encode(envelope)
        self._envelope = envelope
        self._bus = bus

    @property
    def envelope(self) -> Envelope | None:
        return self._envelope

    @property
    def error(self) -> DecodeError | None:
        return None

    async def ack(self) -> None:
        self._bus.settled()

    async def retry(self, delay: float | None, reason: str) -> bool:
        raise NotImplementedError

    async def dead(self, reason: str) -> None:
        self._bus.settled()

    async def release(self) -> None:
        raise NotImplementedError

    async def extend(self, seconds: float) -> None:
        return None


class MemoryBus:
    """One in-memory queue; ``pending`` counts published and not yet acked envelopes."""

    url = "memory://"
    connected = True

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
        self._slots: asyncio.Semaphore | None = None
        self.pending = 0
        self.drained = asyncio.Event()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._queue.put_nowait(None)

    async def declare(self, queue: QueueSpec) -> None:
        return None

    def publish_now(self, batch: Sequence[Envelope]) -> None:
        for envelope in batch:
            self.pending += 1
            self.drained.clear()
            self._queue.put_nowait(envelope)

    async def publish(self, batch: Sequence[Envelope], *, sync: bool = True) -> None:
        self.publish_now(batch)

    def settled(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.drained.set()
        if self._slots is not None:
            self._slots.release()

    async def consume(self, queue: str, prefetch: int) -> AsyncIterator[_Delivery]:
        self._slots = asyncio.Semaphore(prefetch)
        while True:
            await self._slots.acquire()
            envelope = await self._queue.get()
            if envelope is None:
                return
            yield _Delivery(envelope, self)
