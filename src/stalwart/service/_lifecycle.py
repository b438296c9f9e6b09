"""Batches delivery-state transitions onto ``sys.lifecycle``.

One message per batch keeps the cost of visibility low: the persistence
subscriber turns each batch into rows of the store. Two ways in:

- :meth:`LifecycleRecorder.record` for states that may be lost with the
  process (``received``: a redelivery records it again). They wait up to
  ``interval`` for company.
- :meth:`LifecycleRecorder.record_durable` for final states: it returns once
  the batch holding the transition is durably published, so the runtime acks
  a message only after its final state can no longer be lost by a kill. A
  waiting caller sends the batch at once; callers arriving while a batch is
  being published share the next one (group commit), so throughput under load
  costs one publish per batch, not per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from stalwart.backoff import Backoff
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
        token: str | None = None,
    ) -> None:
        self._transport = transport
        self._sender = sender
        self._token = token  # lets consumers tell our batches from a forger's
        self._max_batch = max_batch
        self._interval = interval
        self._max_pending = max_pending
        self._pending: list[Transition] = []
        # Futures of durable records, each with the number of pending transitions
        # that must be published before it resolves.
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._published = 0  # transitions published since start
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0

    def record(self, transition: Transition) -> None:
        """Queue ``transition``; it is published within ``interval``, or lost with the process."""
        if len(self._pending) >= self._max_pending and not self._waiters:
            self._pending.pop(0)
            self._published += 1  # keep positions of later transitions right
            self.dropped += 1
            if self.dropped % 1000 == 1:
                _log.warning("lifecycle backlog full; dropped=%d oldest transitions", self.dropped)
        self._pending.append(transition)
        if len(self._pending) >= self._max_batch:
            self._wake.set()

    async def record_durable(self, transition: Transition) -> None:
        """Queue ``transition`` and return once it (and all queued before it) is durable."""
        self._pending.append(transition)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._published + len(self._pending), future))
        self._wake.set()
        await asyncio.shield(future)

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
        for _, future in self._waiters:
            future.cancel()  # unsent: the message stays unacked and is redelivered
        self._waiters.clear()

    async def _run(self) -> None:
        pace = Backoff(initial=0.1, cap=5.0)
        while True:
            if not self._closing and not self._waiters:
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
                LIFECYCLE_TOPIC,
                LifecycleBatch(transitions=batch),
                sender=self._sender,
                token=self._token,
            )
            try:
                await self._transport.publish([envelope], sync=False)  # ordered before our acks
            except Exception as exc:
                delay = pace.next()
                _log.warning(
                    "publishing %d transitions failed (%s); retry in %.2fs", len(batch), exc, delay
                )
                await asyncio.sleep(delay)
                continue
            pace.reset()
            del self._pending[: len(batch)]
            self._published += len(batch)
            self._resolve()

    def _resolve(self) -> None:
        keep = []
        for position, future in self._waiters:
            if position > self._published:
                keep.append((position, future))
            elif not future.done():
                future.set_result(None)
        self._waiters = keep
