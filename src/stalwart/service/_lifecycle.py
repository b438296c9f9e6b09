"""Batches delivery-state transitions onto ``sys.lifecycle``.

One message per batch (up to ``max_batch`` transitions or ``interval``
seconds) keeps the cost of visibility low: the persistence subscriber turns
each batch into rows of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from stalwart.bus import Transport
from stalwart.envelope import Envelope, Transition
from stalwart.messages import LIFECYCLE_TOPIC, LifecycleBatch

__all__ = ["LifecycleRecorder"]

_log = logging.getLogger("stalwart.service.lifecycle")


class LifecycleRecorder:
    """Collects transitions and publishes them in batches from one owned task."""

    def __init__(
        self,
        transport: Transport,
        sender: str,
        *,
        max_batch: int = 500,
        interval: float = 0.1,
        max_pending: int = 100_000,
    ) -> None:
        self._transport = transport
        self._sender = sender
        self._max_batch = max_batch
        self._interval = interval
        self._max_pending = max_pending
        self._pending: list[Transition] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0

    def record(self, transition: Transition) -> None:
        if len(self._pending) >= self._max_pending:
            self._pending.pop(0)
            self.dropped += 1
            if self.dropped % 1000 == 1:
                _log.warning("lifecycle backlog full; dropped=%d oldest transitions", self.dropped)
        self._pending.append(transition)
        if len(self._pending) >= self._max_batch:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lifecycle:{self._sender}")

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what is pending (within ``timeout``), then stop the task."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=timeout)
            if not done:
                _log.warning("lifecycle flush timed out; %d transitions unsent", len(self._pending))
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._closing:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):  # see HeartbeatSender.beat
                        await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                if self._closing:
                    return
                continue
            batch = self._pending[: self._max_batch]
            envelope = Envelope.new(
                LIFECYCLE_TOPIC, LifecycleBatch(transitions=batch), sender=self._sender
            )
            try:
                await self._transport.publish([envelope])
            except Exception as exc:
                failures += 1
                delay = min(5.0, 0.1 * 2**failures) * random.uniform(0.5, 1.0)
                _log.warning(
                    "publishing %d transitions failed (%s); retry in %.2fs", len(batch), exc, delay
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            del self._pending[: len(batch)]
