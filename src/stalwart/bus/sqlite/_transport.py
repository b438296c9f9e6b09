"""The :class:`SqliteTransport` (the package docstring describes the backend)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, Literal, TypeVar

import psutil

from stalwart.bus._transport import (
    DeadLetter,
    Delivery,
    EncodedMessage,
    QueueSpec,
    QueueStats,
    within_limit,
)
from stalwart.bus.sqlite import _ops as ops
from stalwart.bus.sqlite._batch import TurnBatcher
from stalwart.bus.sqlite._consumer import SqliteConsumer, SqliteDelivery, ack_together
from stalwart.bus.sqlite._schema import connect, db_path_from_url
from stalwart.bus.sqlite._wake import WakeHub
from stalwart.bus.sqlite._writer import GroupWriter, Op, Touched
from stalwart.envelope import DEFAULT_MAX_SIZE, Envelope, decode, encode
from stalwart.errors import (
    BrokerUnavailable,
    ConfigError,
    DecodeError,
    TransportClosed,
    TransportError,
)

__all__ = ["SqliteDelivery", "SqliteTransport"]

_log = logging.getLogger("stalwart.bus.sqlite")

_JANITOR_PERIOD: Final = 30.0
_T = TypeVar("_T")


class SqliteTransport:
    """The embedded bus transport (see the module docstring); start() before use."""

    def __init__(
        self,
        url: str,
        *,
        max_message_size: int = DEFAULT_MAX_SIZE,
        durability: Literal["full", "normal"] = "full",
        **ignored_options: Any,
    ) -> None:
        if durability not in ("full", "normal"):
            raise ConfigError(f"bus durability {durability!r} is unknown: use 'full' or 'normal'")
        if max_message_size <= 0:
            raise ConfigError("bus.max_message_size must be a positive number of bytes")
        self.url = url
        self.path = db_path_from_url(url)
        self.durability = durability
        self.max_message_size = max_message_size
        if ignored_options:
            _log.debug("sqlite transport ignores options %s", sorted(ignored_options))
        self._router = ops.Router()
        self._writer: GroupWriter | None = None
        self._hub = WakeHub(self.path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumers: dict[str, set[SqliteConsumer]] = {}
        self._ephemeral: set[str] = set()
        self._janitor: asyncio.Task[None] | None = None
        self._state: Literal["new", "open", "closed"] = "new"
        self._publishes = self._publish_batcher(self._submit)
        self._unsynced_publishes = self._publish_batcher(self._submit_light)

    def __repr__(self) -> str:
        return f"SqliteTransport({self.url!r}, durability={self.durability!r})"

    # -- life cycle ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """The file is the broker: reachable for as long as the transport is open."""
        return self._state == "open"

    async def start(self) -> None:
        if self._state == "open":
            return
        if self._state == "closed":
            raise TransportClosed("this embedded bus transport was closed; open a new one")
        loop = asyncio.get_running_loop()
        conn = await asyncio.to_thread(connect, self.path, self.durability)
        try:
            await asyncio.to_thread(self._hub.open)
        except OSError as exc:
            conn.close()
            raise BrokerUnavailable(
                f"cannot create the wake-up directory {self._hub.directory}: {exc}; make the "
                "bus file's directory writable"
            ) from exc
        self._loop = loop
        self._writer = GroupWriter(conn, loop, self._after_commit, f"stalwart-bus-{self.path.name}")
        self._writer.start()
        self._state = "open"
        await self._reap_ephemeral()
        self._janitor = asyncio.create_task(self._janitor_loop(), name="stalwart-bus-janitor")

    async def close(self) -> None:
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        writer = self._writer
        if writer is None:
            return
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        pending: list[asyncio.Future[Any]] = []
        for name, consumers in self._consumers.items():
            for consumer in consumers:
                leases = consumer.take_unsettled()
                if leases:
                    release = partial(ops.release, queue=name, leases=leases)
                    pending.append(writer.submit(release, durable=False))
                consumer.wake.set()
        for name in sorted(self._ephemeral):
            pending.append(writer.submit(partial(ops.delete_queue, name=name)))
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, BaseException):
                _log.warning("closing the embedded bus: %s", outcome)
        await asyncio.sleep(0)  # let consumers hand back rows a last claim leased
        await writer.stop()
        self._hub.close()
        self._consumers.clear()

    def _is_open(self) -> bool:
        return self._state == "open"

    def _check_open(self) -> GroupWriter:
        if self._state != "open" or self._writer is None:
            raise TransportClosed(
                "the embedded bus transport is not open: call start() first, or open a new "
                "one after close()"
            )
        return self._writer

    def _submit(self, fn: Op[_T]) -> asyncio.Future[_T]:
        return self._check_open().submit(fn)

    def _submit_light(self, fn: Op[_T]) -> asyncio.Future[_T]:
        """Reads, claims, settlements, leases: losing them to a power cut loses no message."""
        return self._check_open().submit(fn, durable=False)

    def _submit_late(self, fn: Op[_T]) -> asyncio.Future[_T]:
        """For clean-up while closing: runs as long as the writer has not stopped."""
        if self._writer is None:
            raise TransportClosed("the embedded bus transport was never started")
        return self._writer.submit(fn, durable=False)

    # -- wake-ups ------------------------------------------------------------------

    def _after_commit(self, touched: Touched) -> None:
        """Writer thread: wake other processes, then this process's consumers."""
        self._hub.notify(touched)
        loop = self._loop
        if self._consumers and loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake_local, touched)

    def _wake_local(self, names: set[str] | None) -> None:
        targets = self._consumers if names is None else names
        for name in targets:
            for consumer in self._consumers.get(name, ()):
                consumer.wake.set()

    # -- publishing and consuming --------------------------------------------------

    async def declare(self, queue: QueueSpec) -> None:
        writer = self._check_open()
        owner = None
        if queue.ephemeral:
            owner = (socket.gethostname(), os.getpid(), psutil.Process().create_time())
            self._ephemeral.add(queue.name)
        await writer.submit(partial(ops.declare, spec=queue, owner=owner))

    def _publish_batcher(
        self, submit: Callable[[Op[list[int]]], asyncio.Future[list[int]]]
    ) -> TurnBatcher[list[tuple[str, bytes]], int]:
        """Publishes of one loop turn, submitted as one writer operation."""
        return TurnBatcher(
            submit, lambda batches: partial(ops.publish, router=self._router, batches=batches)
        )

    async def publish(self, batch: Sequence[Envelope], *, sync: bool = True) -> None:
        """``sync=False`` commits without fsync: the WAL keeps commits in order, so a
        power loss undoes such a batch only together with every later commit."""
        self._check_open()
        limit = self.max_message_size
        items = [(envelope.topic, encode(envelope, limit)) for envelope in batch]
        if items:
            await (self._publishes if sync else self._unsynced_publishes).add(items)

    async def publish_encoded(self, batch: Sequence[EncodedMessage]) -> None:
        self._check_open()
        items = [(row.topic, within_limit(row.data, self.max_message_size)) for row in batch]
        if items:
            await self._publishes.add(items)

    async def consume(self, queue: str, prefetch: int) -> AsyncIterator[SqliteDelivery]:
        async with self._consumer(queue, prefetch) as consumer:
            async for delivery in consumer.deliveries():
                yield delivery

    async def consume_batches(
        self, queue: str, prefetch: int
    ) -> AsyncIterator[list[SqliteDelivery]]:
        """The rows of each claim as one list (:class:`~stalwart.bus.Batching`)."""
        async with self._consumer(queue, prefetch) as consumer:
            async for batch in consumer.batches():
                yield batch

    async def ack_all(self, deliveries: Sequence[Delivery]) -> None:
        """Ack deliveries of this transport in one writer operation."""
        self._check_open()
        ours = [d for d in deliveries if isinstance(d, SqliteDelivery)]
        if len(ours) < len(deliveries):
            raise TransportError(
                "ack_all takes deliveries of the embedded bus only; ack others one by one"
            )
        if ours:
            await ack_together(ours, self._submit_light)

    @contextlib.asynccontextmanager
    async def _consumer(self, queue: str, prefetch: int) -> AsyncIterator[SqliteConsumer]:
        """A registered consumer of ``queue``; stopped (its buffer released) on exit."""
        self._check_open()
        consumer = SqliteConsumer(
            queue, prefetch, self._submit_light, self._router, self._is_open, self._submit_late
        )
        if self._loop is not None:
            self._hub.listen(self._loop, self._wake_local)
        self._consumers.setdefault(queue, set()).add(consumer)
        try:
            yield consumer
        finally:
            await consumer.stop()
            if not consumer.holding:  # else close() still has leases to release
                self._consumers.get(queue, set()).discard(consumer)

    # -- management ----------------------------------------------------------------

    async def queue_stats(self, queue: str) -> QueueStats:
        await self._submit_light(partial(_require_queue, router=self._router, queue=queue))
        ready, inflight, delayed, dead = await self._submit_light(partial(ops.stats, queue=queue))
        return QueueStats(queue, ready=ready, inflight=inflight, delayed=delayed, dead=dead)

    async def queues(self) -> list[str]:
        return await self._submit_light(ops.list_queues)

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        rows = await self._submit_light(partial(ops.list_dead, queue=queue, limit=limit))
        letters = []
        for row_id, raw, reason, attempts, died_at in rows:
            envelope: Envelope | None
            try:
                envelope = decode(raw)
            except DecodeError:
                envelope = None
            letters.append(
                DeadLetter(
                    envelope=envelope,
                    raw=bytes(raw),
                    queue=queue,
                    reason=reason,
                    attempts=attempts,
                    died_at=datetime.fromtimestamp(died_at, UTC),
                    key=str(row_id),
                )
            )
        return letters

    async def requeue_dead(self, queue: str, keys: Sequence[str] | None = None) -> int:
        return await self._submit(partial(ops.requeue_dead, queue=queue, keys=keys))

    async def purge_dead(self, queue: str, keys: Sequence[str] | None = None) -> int:
        return await self._submit(partial(ops.purge_dead, queue=queue, keys=keys))

    # -- housekeeping --------------------------------------------------------------

    async def _reap_ephemeral(self) -> None:
        """Delete ephemeral queues whose owning process on this host is gone."""
        host = socket.gethostname()
        rows = await self._submit_light(ops.live_ephemeral_owners)
        for name, owner_host, pid, started in rows:
            if owner_host != host or name in self._ephemeral or _alive(pid, started):
                continue
            _log.info("removing ephemeral queue %s: its process %s has exited", name, pid)
            await self._submit(partial(ops.delete_queue, name=name))

    async def _janitor_loop(self) -> None:
        while True:
            await asyncio.sleep(random.uniform(0.5, 1.0) * _JANITOR_PERIOD)
            try:
                await self._reap_ephemeral()
            except TransportClosed:
                return
            except Exception:
                _log.exception("reaping ephemeral queues failed; will try again")


def _require_queue(conn: Any, touched: Touched, router: ops.Router, queue: str) -> None:
    router.spec(conn, queue)


def _alive(pid: int | None, started: float | None) -> bool:
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        return started is None or abs(process.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; we may just not inspect it
