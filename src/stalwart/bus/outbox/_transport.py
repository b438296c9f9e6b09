"""The :class:`OutboxTransport` (the package docstring describes it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Literal

from stalwart.backoff import Backoff
from stalwart.bus._factory import redact_url
from stalwart.bus._tasks import cancel_and_wait
from stalwart.bus._transport import (
    DeadLetter,
    Delivery,
    Encoded,
    EncodedMessage,
    Pipelined,
    QueueSpec,
    QueueStats,
    Transport,
    within_limit,
)
from stalwart.bus.outbox._pipeline import Pipeline
from stalwart.bus.outbox._spool import Spool, SpooledRow, SpoolError, SpoolStatus
from stalwart.bus.sqlite._schema import db_path_from_url
from stalwart.envelope import DEFAULT_MAX_SIZE, Envelope, decode, encode, looks_encoded
from stalwart.errors import (
    BrokerUnavailable,
    DecodeError,
    PublishRefused,
    StalwartError,
    TransportClosed,
    first_line,
)
from stalwart.ids import new_id

__all__ = ["OutboxTransport", "SpoolError", "SpoolStatus", "destination", "spool_status"]

log = logging.getLogger("stalwart.bus.outbox")

Progress = Callable[[int, int], None]  # (forwarded so far, pending at start)
# Batches sent while the confirms of earlier ones are awaited: enough to cover the
# broker's round trip, few enough that a failure sends little again.
_WINDOW = 4


def destination(url: str) -> str:
    """The bus ``url`` names, as the spool records it: without its password, and an
    embedded bus by its absolute path (a relative one depends on the directory)."""
    if url.partition("://")[0].lower() == "sqlite":
        return f"sqlite:///{db_path_from_url(url).resolve()}"
    return redact_url(url)


def spool_status(path: str | Path, bus: str | None = None) -> list[SpoolStatus]:
    """Pending count, bytes and oldest time for each bus with messages in the spool at
    ``path`` (``bus`` None: spooled by an older stalwart, destination unknown), and
    for ``bus`` (a :func:`destination`) even when nothing waits for it."""
    spool = Spool(path, bus=bus)
    try:
        found = spool.by_bus()
        if bus is not None and all(row.bus != bus for row in found):
            found.insert(0, spool.status())
        return found
    finally:
        spool.close()


class OutboxTransport:
    """A transport that never makes a publisher wait for an absent broker.

    ``publish_timeout`` bounds how long a direct publish may take before the
    batch is spooled instead; the forwarder retries with jittered exponential
    backoff from ``backoff_initial`` up to ``backoff_cap`` seconds and
    looks for rows spooled by other processes every ``poll`` seconds. With
    ``forward=False`` nothing is forwarded in the background (only
    :meth:`flush` forwards), as ``stalwart outbox flush`` wants.
    """

    def __init__(
        self,
        inner: Transport,
        spool_path: str | Path,
        *,
        publish_timeout: float = 5.0,
        batch_size: int = 200,
        backoff_initial: float = 0.1,
        backoff_cap: float = 10.0,
        poll: float = 2.0,
        lease: float = 15.0,
        durability: Literal["full", "normal"] = "full",
        max_message_size: int | None = None,
        forward: bool = True,
    ) -> None:
        self.inner = inner
        self._forward = forward
        self.url = inner.url
        self.bus = destination(inner.url)
        self.spool_path = str(spool_path)
        self._publish_timeout = publish_timeout
        self._batch_size = batch_size
        self._pace = Backoff(backoff_initial, backoff_cap)  # bounds checked now
        self._poll = poll
        self._lease = lease
        self._durability: Literal["full", "normal"] = durability
        inner_limit = getattr(inner, "max_message_size", DEFAULT_MAX_SIZE)
        self._max_size: int = max_message_size or (
            inner_limit if isinstance(inner_limit, int) else DEFAULT_MAX_SIZE
        )
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{new_id()}"
        self._spool: Spool | None = None
        self._spooling = True  # until the forwarder has seen the spool empty
        self._order = asyncio.Lock()
        self._start_lock = asyncio.Lock()
        self._inner_started = False
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._forwarder: asyncio.Task[None] | None = None
        self._claimed_until = 0.0  # loop time until which this process holds the forwarder lease
        self._pipeline: Pipeline | None = None  # what is sent, confirmed, removed
        self._forwarding = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"OutboxTransport({self.inner!r}, spool={self.spool_path!r})"

    def _new_backoff(self) -> Backoff:
        """A retry pace of its own for each forwarding loop."""
        return Backoff(self._pace.initial, self._pace.cap)

    # -- lifecycle ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the broker is reachable now (publishing works either way)."""
        return self._inner_started and not self._closed and self.inner.connected

    async def start(self) -> None:
        """Open the spool and start forwarding; a broker that is down is not an error."""
        if self._closed:
            raise TransportClosed("the outbox transport is closed; open a new one")
        if self._spool is not None:
            return
        self._spool = await asyncio.to_thread(
            Spool, self.spool_path, self._durability, bus=self.bus
        )
        self._pipeline = Pipeline(
            self._spool, self._send, window=_WINDOW, read=self._batch_size * _WINDOW
        )
        # Publish directly unless older messages wait (they must go first).
        self._spooling = await asyncio.to_thread(self._spool.pending) > 0
        with contextlib.suppress(BrokerUnavailable):
            await self._ensure_inner()
        if not self._inner_started:
            log.warning("broker %s unavailable; publishing to the outbox spool", self.url)
        if self._forward:
            self._forwarder = asyncio.create_task(self._forward_forever(), name="stalwart-outbox")

    async def close(self) -> None:
        if self._closed:
            return
        if self._forwarder is not None:
            await cancel_and_wait(self._forwarder)
        if self._spool is not None and self._spooling and self._inner_started and self._forward:
            # A short-lived process (a batch tool) forwards what it can before it goes.
            with contextlib.suppress(BrokerUnavailable, PublishRefused, TimeoutError):
                await self.flush(timeout=self._publish_timeout)
        self._closed = True
        if self._pipeline is not None:
            await self._pipeline.removed()  # confirmed rows must not go out again
            self._pipeline = None
        if self._spool is not None:
            spool, self._spool = self._spool, None
            await asyncio.to_thread(spool.release, self._owner)
            await asyncio.to_thread(spool.close)
        if self._inner_started:
            await self.inner.close()

    async def _ensure_inner(self) -> None:
        if self._closed:
            raise TransportClosed("the outbox transport is closed; open a new one")
        if self._inner_started:
            return
        async with self._start_lock:
            if not self._inner_started:
                await self.inner.start()
                self._inner_started = True

    def _need_spool(self) -> Spool:
        if self._spool is None:
            raise TransportClosed(
                "the outbox transport is not started or is closed; await transport.start()"
            )
        return self._spool

    # -- publishing --------------------------------------------------------

    async def publish(self, batch: Sequence[Envelope], *, sync: bool = True) -> None:
        """Publish through the broker, or spool durably when it cannot confirm (either way:
        the broker's confirm, or the spool's fsync, is what makes the next step safe)."""
        rows = [Encoded(env.id, env.topic, encode(env, self._max_size)) for env in batch]
        await self.publish_encoded(rows)

    async def publish_encoded(self, batch: Sequence[EncodedMessage]) -> None:
        """:meth:`publish` for envelopes already encoded: the bytes are spooled or sent as
        they are."""
        spool = self._need_spool()
        if not batch:
            return
        rows = [Encoded(row.id, row.topic, within_limit(row.data, self._max_size)) for row in batch]
        if not self._spooling:
            # Concurrent direct publishes are fine: order is only promised
            # between publishes that follow one another.
            try:
                await self._ensure_inner()
                await asyncio.wait_for(self.inner.publish_encoded(rows), self._publish_timeout)
                return
            except (BrokerUnavailable, PublishRefused, TimeoutError) as exc:
                log.warning(
                    "broker cannot confirm (%s); spooling %d message(s)", self._why(exc), len(rows)
                )
        async with self._order:
            self._spooling = True
            await asyncio.to_thread(spool.append, rows)
            self._drained.clear()
        self._wake.set()

    def _why(self, exc: BaseException) -> str:
        """What a failed publish says in the log (a timeout's own message is empty)."""
        if isinstance(exc, TimeoutError):
            return f"no confirm within {self._publish_timeout:g} s"
        return first_line(exc)

    async def pending(self) -> int:
        return await asyncio.to_thread(self._need_spool().pending)

    async def status(self) -> SpoolStatus:
        """What waits for this outbox's bus."""
        return await asyncio.to_thread(self._need_spool().status)

    async def adopt(self) -> int:
        """Take the spooled messages whose bus was never recorded (an older stalwart's
        spool) as this bus's, to be forwarded here; returns how many."""
        adopted = await asyncio.to_thread(self._need_spool().adopt)
        if adopted:
            async with self._order:
                self._spooling = True
                self._drained.clear()
            self._wake.set()
        return adopted

    async def flush(self, timeout: float, progress: Progress | None = None) -> int:
        """Forward everything spooled now; returns how many this process forwarded
        meanwhile (the background forwarder takes turns with it).

        Raises BrokerUnavailable when the spool is not empty after ``timeout``.
        """
        spool = self._need_spool()
        pipeline = self._need_pipeline()
        confirmed_before = pipeline.confirmed
        total = await asyncio.to_thread(spool.pending)
        forwarded = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        backoff = self._new_backoff()
        problem = "another process is forwarding this spool"
        while True:
            if loop.time() > deadline:
                raise BrokerUnavailable(
                    f"outbox flush: {max(total - forwarded, 0)} message(s) still spooled after "
                    f"{timeout:.0f}s ({problem}); start the broker and run it again"
                )
            try:
                more = await self._forward_chunk(spool)
            except (BrokerUnavailable, PublishRefused, TimeoutError) as exc:
                problem = str(exc) or type(exc).__name__
                await asyncio.sleep(max(0.0, min(backoff.next(), deadline - loop.time())))
                continue
            forwarded = pipeline.confirmed - confirmed_before
            if not more:
                return forwarded
            if progress is not None:
                progress(forwarded, max(total, forwarded))

    # -- forwarding --------------------------------------------------------

    async def _forward_chunk(self, spool: Spool) -> bool:
        """Send the oldest rows; False once the spool is empty and all is confirmed.

        Pipelined (see :mod:`stalwart.bus.outbox._pipeline`): the spool is read ahead,
        several batches' confirms are awaited at once and confirmed rows are removed
        in the background.
        """
        pipeline = self._need_pipeline()
        async with self._forwarding:  # flush() and the forwarder task take turns
            try:
                return await self._forward_step(spool, pipeline)
            except BaseException:
                pipeline.abandon()
                raise

    async def _forward_step(self, spool: Spool, pipeline: Pipeline) -> bool:
        loop = asyncio.get_running_loop()
        if loop.time() > self._claimed_until - self._lease / 2:  # renew at half-life only
            if not await asyncio.to_thread(spool.claim, self._owner, self._lease):
                await pipeline.settle()
                pipeline.restart()  # another process forwards now
                await asyncio.sleep(min(self._poll, 0.5))
                return True
            self._claimed_until = loop.time() + self._lease
        rows = await pipeline.rows()
        if not rows:
            if await pipeline.settle():
                return True  # the spool is read again: rows may have come meanwhile
            pipeline.restart()
            async with self._order:
                if not await asyncio.to_thread(spool.pending):
                    self._spooling = False
                    self._drained.set()
                    await asyncio.to_thread(spool.release, self._owner)
                    self._claimed_until = 0.0
                    return False
            return True
        for start in range(0, len(rows), self._batch_size):
            part = rows[start : start + self._batch_size]
            # A spool row has the fields of an EncodedMessage: it goes out as read.
            batch: Sequence[EncodedMessage] = part
            if not all(looks_encoded(row.data) for row in part):
                # Some rows need decoding again, or quarantine.
                outgoing = [
                    row if looks_encoded(row.data) else await self._decoded(spool, row)
                    for row in part
                ]
                batch = [row for row in outgoing if row is not None]
            await self._ensure_inner()
            await pipeline.send(part, batch)
        return True

    async def _send(self, batch: Sequence[EncodedMessage]) -> asyncio.Future[None]:
        """Put ``batch`` on the wire in order; the future of its confirms. A transport
        that cannot keep confirms in flight publishes it whole, one batch at a time."""
        if isinstance(self.inner, Pipelined):
            return asyncio.ensure_future(await self.inner.send_encoded(batch))
        await self.inner.publish_encoded(batch)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def _decoded(self, spool: Spool, row: SpooledRow) -> Encoded | None:
        """A row not shaped as encode() writes them (an older stalwart's, a damaged one),
        decoded and encoded again; quarantined if it does not decode (None). Every other
        row goes out with its bytes as spooled."""
        try:
            return Encoded(row.id, row.topic, encode(decode(row.data)))
        except DecodeError as exc:
            log.error(
                "outbox row %d of %s does not decode (%s); set aside in its quarantine "
                "table (see `stalwart outbox status`)",
                row.seq,
                self.spool_path,
                exc,
            )
            await asyncio.to_thread(spool.quarantine, row.seq, str(exc))
            return None

    def _need_pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise TransportClosed(
                "the outbox transport is not started or is closed; await transport.start()"
            )
        return self._pipeline

    async def _forward_forever(self) -> None:
        spool = self._need_spool()
        backoff = self._new_backoff()
        while True:
            try:
                more = await self._forward_chunk(spool)
            except (BrokerUnavailable, PublishRefused, TimeoutError) as exc:
                pause = backoff.next()
                log.info("outbox forwarding paused %.2fs: %s", pause, exc)
                await asyncio.sleep(pause)
                continue
            except StalwartError as exc:  # spool or configuration trouble: keep trying, loudly
                log.error("outbox forwarding failed: %s", exc)
                await asyncio.sleep(backoff.cap)
                continue
            backoff.reset()
            if not more:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)

    async def wait_drained(self, timeout: float) -> None:
        """Wait until this process has seen the spool empty (tests, shutdown)."""
        await asyncio.wait_for(self._drained.wait(), timeout)

    # -- delegation --------------------------------------------------------

    async def declare(self, queue: QueueSpec) -> None:
        await self._ensure_inner()
        await self.inner.declare(queue)

    def consume(self, queue: str, prefetch: int) -> AsyncIterator[Delivery]:
        return self._consume(queue, prefetch)

    async def _consume(self, queue: str, prefetch: int) -> AsyncIterator[Delivery]:
        await self._ensure_inner()
        iterator = self.inner.consume(queue, prefetch)
        try:
            async for delivery in iterator:
                yield delivery
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None:
                await closer()

    async def queue_stats(self, queue: str) -> QueueStats:
        await self._ensure_inner()
        return await self.inner.queue_stats(queue)

    async def queues(self) -> list[str]:
        await self._ensure_inner()
        return await self.inner.queues()

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        await self._ensure_inner()
        return await self.inner.dead_letters(queue, limit)

    async def requeue_dead(self, queue: str, keys: Sequence[str] | None = None) -> int:
        await self._ensure_inner()
        return await self.inner.requeue_dead(queue, keys)

    async def purge_dead(self, queue: str, keys: Sequence[str] | None = None) -> int:
        await self._ensure_inner()
        return await self.inner.purge_dead(queue, keys)
