"""A long-lived component's connection to the bus, kept whatever the bus does.

The watchdog and the dashboard run for days and must go on working while the
broker is away. A transport fails fast on its first ``start()`` and, once
started, reconnects by itself; so :class:`BusLink` retries the start in the
background, paced by :class:`~stalwart.backoff.Backoff`, says since when the
bus is down and when it is tried next, and once it is up runs what the
component asked for: its subscriptions (each renewed after a failure), a
bounded queue of envelopes to publish, and a callback for the first time up.
Nothing the component does ever waits on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from stalwart.backoff import Backoff
from stalwart.bus._factory import redact_url
from stalwart.bus._forever import consume_forever
from stalwart.bus._tasks import cancel_and_wait
from stalwart.bus._transport import QueueSpec, QueueStats, Transport
from stalwart.envelope import Envelope, utcnow
from stalwart.errors import StalwartError

__all__ = ["BusLink"]

_log = logging.getLogger("stalwart.bus.link")
_BATCH = 100


@dataclass(frozen=True)
class _Subscription:
    spec: QueueSpec
    handler: Callable[[Envelope], None]
    prefetch: int


class BusLink:
    """Starts ``transport`` (when ``start``), retrying while the bus cannot be reached,
    then keeps the subscriptions and the publishing going until :meth:`close`.

    The caller closes the transport after :meth:`close`. ``timeout`` bounds each
    start, declare and publish; ``max_pending`` the envelopes kept while the bus
    is away (past it the oldest are dropped, with a warning).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        start: bool = True,
        backoff: Backoff | None = None,
        max_pending: int = 10_000,
        timeout: float = 15.0,
        name: str = "bus-link",
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.transport = transport
        self._start = start
        self._backoff = backoff or Backoff()
        self._max_pending = max_pending
        self._timeout = timeout
        self._name = name
        self._subscriptions: list[_Subscription] = []
        self._on_up: list[Callable[[], Awaitable[None]]] = []
        self._pending: deque[Envelope] = deque()
        self._inflight = 0
        self._dropped = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._stats_failing: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._tried = asyncio.Event()
        self._up = False
        self._delay = 0.0
        self.since: datetime | None = None
        self.next_retry: datetime | None = None
        self.attempts = 0
        self.last_failure: str | None = None

    # -- what the component asks for, before open() ---------------------------

    def subscribe(
        self, spec: QueueSpec, handler: Callable[[Envelope], None], *, prefetch: int = 256
    ) -> None:
        """Consume ``spec`` once the bus is up, calling ``handler`` with each envelope
        (acked first: for feeds where a lost message is replaced by the next)."""
        if self._tasks:
            raise RuntimeError("subscribe before open(): the link is already running")
        self._subscriptions.append(_Subscription(spec, handler, prefetch))

    def on_up(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback`` once, the first time the bus is reached."""
        self._on_up.append(callback)

    # -- state ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The bus URL with its password masked."""
        return redact_url(self.transport.url)

    @property
    def up(self) -> bool:
        """The transport has started (it may be reconnecting now)."""
        return self._up

    @property
    def reachable(self) -> bool:
        """Started and connected now (a bus lost after start reconnects by itself)."""
        return self._up and self.transport.connected

    @property
    def pending(self) -> int:
        """Envelopes waiting to be published."""
        return len(self._pending)

    # -- running --------------------------------------------------------------

    async def open(self, *, wait: bool = True) -> None:
        """Start trying now and keep trying in the background; with ``wait``, return
        after the first try, so :attr:`since` and :attr:`reachable` already tell."""
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self._run(), name=self._name))
        if wait:
            await self._tried.wait()

    async def close(self, flush_timeout: float = 0.0) -> None:
        """Publish what is pending (up to ``flush_timeout`` s if reachable), then stop
        every task at once, even in the middle of a try."""
        if self._pending and self.reachable:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout=flush_timeout)
        if self._pending:
            _log.warning("closing with %d envelopes not published", len(self._pending))
        for task in reversed(self._tasks):
            await cancel_and_wait(task)
        self._tasks.clear()

    def emit(self, envelope: Envelope) -> None:
        """Queue ``envelope`` for publishing; never blocks, never raises."""
        if len(self._pending) >= self._max_pending:
            # never drop what a publish in flight holds: the oldest after it goes
            del self._pending[min(self._inflight, len(self._pending) - 1)]
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                _log.warning("bus unreachable: dropped %d oldest envelopes", self._dropped)
        self._pending.append(envelope)
        self._drained.clear()
        self._wake.set()

    async def queue_stats(self, queue: str) -> QueueStats | None:
        """The backlog of ``queue``, or None while the bus is unreachable."""
        if not self._up:
            return None
        try:
            stats = await asyncio.wait_for(self.transport.queue_stats(queue), timeout=5.0)
        except Exception as exc:
            level = logging.DEBUG if queue in self._stats_failing else logging.WARNING
            self._stats_failing.add(queue)
            _log.log(level, "no backlog for %s yet: %s", queue, exc)
            return None
        self._stats_failing.discard(queue)
        return stats

    async def _run(self) -> None:
        try:
            while not await self._try():
                self._tried.set()
                await asyncio.sleep(self._delay)
        finally:
            self._tried.set()
        for sub in self._subscriptions:
            name = f"{self._name}-{sub.spec.name}"
            self._tasks.append(asyncio.create_task(self._consume(sub), name=name))
        self._tasks.append(asyncio.create_task(self._publish(), name=f"{self._name}-publish"))
        for callback in self._on_up:
            await callback()

    async def _try(self) -> bool:
        if self._start:
            self.attempts += 1
            try:
                await asyncio.wait_for(self.transport.start(), timeout=self._timeout)
            except Exception as exc:  # a backend's own error too: keep trying, say why
                self._failed(exc)
                return False
            if self.since is not None:
                _log.info("the bus at %s is reachable after %d tries", self.url, self.attempts)
        self._up = True
        self.since = self.next_retry = None
        self.attempts = 0
        self.last_failure = None
        return True

    def _failed(self, exc: Exception) -> None:
        now = utcnow()
        first = self.since is None
        self.since = self.since or now
        self.last_failure = str(exc) if isinstance(exc, StalwartError) else repr(exc)
        self._delay = delay = self._backoff.next()
        self.next_retry = now + timedelta(seconds=delay)
        _log.log(
            logging.WARNING if first else logging.INFO,
            "the bus at %s is unreachable (%s); try %d, next in %.1f s",
            self.url,
            self.last_failure,
            self.attempts,
            delay,
            exc_info=not isinstance(exc, StalwartError),
        )

    async def _consume(self, sub: _Subscription) -> None:
        """Declare and consume ``sub`` for good (:func:`consume_forever`)."""
        deliveries = consume_forever(
            self.transport,
            sub.spec,
            sub.prefetch,
            pace=Backoff(self._backoff.initial, self._backoff.cap),
            declare_timeout=self._timeout,
            label="bus link",
        )
        async with contextlib.aclosing(deliveries):
            async for delivery in deliveries:
                try:
                    await delivery.ack()
                except Exception as exc:  # it comes back to the next consumer
                    _log.warning("ack of a %s delivery failed: %s", sub.spec.name, exc)
                    continue
                if delivery.envelope is not None:
                    self._handle(sub, delivery.envelope)

    @staticmethod
    def _handle(sub: _Subscription, envelope: Envelope) -> None:
        try:
            sub.handler(envelope)
        except Exception:  # one bad message must not end the subscription
            _log.exception("handling %s from %s failed", envelope.id, sub.spec.name)

    async def _publish(self) -> None:
        """Publish the pending envelopes in batches, oldest first, retrying after a failure."""
        backoff = Backoff(self._backoff.initial, self._backoff.cap)
        while True:
            self._wake.clear()
            while self._pending:
                batch = [self._pending[i] for i in range(min(_BATCH, len(self._pending)))]
                self._inflight = len(batch)
                try:
                    await asyncio.wait_for(self.transport.publish(batch), timeout=self._timeout)
                except Exception as exc:
                    _log.warning("publishing to the bus at %s failed: %s", self.url, exc)
                    await asyncio.sleep(backoff.next())
                    continue
                finally:
                    self._inflight = 0
                backoff.reset()
                for _ in batch:
                    self._pending.popleft()
            self._drained.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
