"""The persistence subscriber: every envelope on the bus, and its life cycle, into the store.

It consumes its own durable queue (``stalwart-persist``, bound to ``#``, which
includes the ``sys.*`` topics), writes in batches (up to ``batch_size``
envelopes, or ``batch_interval`` seconds after the first once the previous
batch has committed), and acknowledges a batch only after its transaction
commits. Writes are idempotent, so a
redelivery after a crash changes nothing. When the database is down it stops
acknowledging, holds at most ``prefetch`` deliveries, and retries with capped
exponential backoff and jitter until the database is back or it is stopped;
nothing unacknowledged is lost, because the bus redelivers it. When the
database refuses a row itself (too long, bad bytes), the rows it accepts still
go in and the refused one is reported (:mod:`stalwart.store._isolate`).

With ``heartbeat`` set it sends heartbeats as service ``<queue>``
(``sys.heartbeat.stalwart-persist``), ``processed`` counting the envelopes it
stored, so that a watchdog can halt and restart a persister that froze (a
SIGSTOPped persister holding SQLite's write lock blocks every other writer).
Beats are withheld while one write attempt has run for ``stall_after``
seconds: a persister that is alive but stuck is restarted too. Idle, or
waiting to retry while the database is down, it is healthy and keeps beating.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from stalwart.backoff import jittered
from stalwart.bus import Counters, Delivery, HeartbeatSender, QueueSpec, Transport, consume_forever
from stalwart.envelope import default_sender, utcnow
from stalwart.errors import StoreUnavailable
from stalwart.store._isolate import judge, refused_rows
from stalwart.store._rows import Rows, build_rows
from stalwart.store._store import Store, StoreDataError
from stalwart.store._undecodable import undecodable_rows

__all__ = ["PERSIST_QUEUE", "PersistOptions", "PersistStats", "Persister"]

_log = logging.getLogger("stalwart.store.persist")
PERSIST_QUEUE: Final = "stalwart-persist"
_ACK_CHUNK: Final = 1000


@dataclass(frozen=True, slots=True)
class PersistOptions:
    """Batching, buffering and retry knobs (the defaults keep up with 10k msg/s)."""

    queue: str = PERSIST_QUEUE
    batch_size: int = 1000
    batch_interval: float = 0.1
    prefetch: int = 4000
    retry_initial: float = 0.2
    retry_max: float = 10.0
    lease: float = 60.0
    heartbeat: float | None = None  # seconds between heartbeats; None sends none
    stall_after: float = 60.0  # twice SQLite's busy timeout: a write that waits is not stuck

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.prefetch < self.batch_size:
            raise ValueError("need batch_size >= 1 and prefetch >= batch_size")
        if self.batch_interval <= 0 or self.retry_initial <= 0 or self.retry_max <= 0:
            raise ValueError("batch_interval and retry delays must be > 0 seconds")
        if (self.heartbeat is not None and self.heartbeat <= 0) or self.stall_after <= 0:
            raise ValueError("heartbeat and stall_after must be > 0 seconds")


@dataclass(slots=True)
class PersistStats:
    """Counters since start.

    ``lag`` is the age of the oldest envelope of the last batch when that batch
    committed (publish-to-stored delay, worst case of the batch); ``max_lag``
    is the largest seen.
    """

    persisted: int = 0
    batches: int = 0
    dead_lettered: int = 0
    retries: int = 0
    lag: float = 0.0
    max_lag: float = 0.0
    errors: list[str] = field(default_factory=list)


class Persister:
    """Runs the subscriber on ``transport`` into ``store``; see the module docstring."""

    def __init__(
        self,
        transport: Transport,
        store: Store,
        options: PersistOptions | None = None,
        *,
        site: str = "local",
        token: str | None = None,
    ) -> None:
        self._transport = transport
        self._store = store
        self.options = options or PersistOptions()
        self.stats = PersistStats()
        self.counters = Counters()  # what the heartbeats report
        self._stop = asyncio.Event()
        self._rng = random.Random()
        self._writing_since: float | None = None  # loop time the running write attempt began
        self._heartbeat: HeartbeatSender | None = None
        if self.options.heartbeat is not None:
            service = self.options.queue
            instance = default_sender(service, site).split("/", 1)[1]
            self._heartbeat = HeartbeatSender(
                transport,
                service=service,
                site=site,
                instance=instance,
                sender=f"{service}@{site}/{instance}",
                interval=self.options.heartbeat,
                counters=self.counters,
                patterns=["#"],
                token=token,
                alive=self.healthy,
            )

    def stop(self) -> None:
        """Finish the batch in hand, then return from :meth:`run`."""
        self._stop.set()

    def healthy(self) -> bool:
        """False while one write attempt has run for ``stall_after`` seconds or more."""
        began = self._writing_since
        if began is None:
            return True
        return asyncio.get_running_loop().time() - began < self.options.stall_after

    async def declare(self) -> None:
        """Declare the durable queue bound to every topic (idempotent)."""
        await self._transport.declare(self._spec)

    @property
    def _spec(self) -> QueueSpec:
        return QueueSpec(name=self.options.queue, patterns=("#",), lease=self.options.lease)

    async def run(self) -> None:
        """Consume and persist until :meth:`stop` or until the transport closes.

        While one batch commits, the next is collected and turned into rows
        (commits stay in order, one at a time); acknowledgements run beside.
        """
        await self.declare()
        if self._heartbeat is not None:
            self._heartbeat.start()
        buffer: asyncio.Queue[Delivery | None] = asyncio.Queue(maxsize=self.options.prefetch)
        reader = asyncio.create_task(self._read(buffer), name="persist-reader")
        committing: asyncio.Task[bool] | None = None
        settling: set[asyncio.Task[None]] = set()
        try:
            while not self._stop.is_set():
                if committing is not None and committing.done() and not committing.result():
                    break  # stopped while the database was down: leave them unacked
                batch, ended = await self._collect(buffer, reader, committing)
                if batch:
                    committing = asyncio.create_task(
                        self._commit(batch, self._rows(batch), committing, settling),
                        name="persist-commit",
                    )
                if ended:
                    break
        finally:
            # Pending commits finish if the database is up; retries give up at once (the
            # bus redelivers what stays unacked), so cancelling run() never hangs.
            self._stop.set()
            try:
                if committing is not None:
                    await committing
            finally:
                if settling:
                    await asyncio.gather(*settling)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                if self._heartbeat is not None:
                    await self._heartbeat.close()

    async def _commit(
        self,
        batch: list[Delivery],
        rows: Rows,
        previous: asyncio.Task[bool] | None,
        settling: set[asyncio.Task[None]],
    ) -> bool:
        """Write after the previous batch, then settle in the background; False if stopped."""
        if previous is not None and not await previous:
            return False
        problems = await self._write(batch, rows)
        if problems is None:
            return False
        task = asyncio.create_task(self._settle_all(batch, problems), name="persist-ack")
        settling.add(task)
        task.add_done_callback(settling.discard)
        return True

    async def _read(self, buffer: asyncio.Queue[Delivery | None]) -> None:
        """Fill ``buffer`` until the transport closes (a consumer that ends or fails is
        started again), then mark its end with None."""
        deliveries = consume_forever(
            self._transport, self._spec, self.options.prefetch, label="persister"
        )
        try:
            async with contextlib.aclosing(deliveries):
                async for delivery in deliveries:
                    await buffer.put(delivery)
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                buffer.put_nowait(None)

    async def _next(
        self,
        buffer: asyncio.Queue[Delivery | None],
        timeout: float | None,
        previous: asyncio.Task[bool] | None = None,
    ) -> Delivery | None:
        """The next delivery, or None at the end of the stream.

        TimeoutError on timeout, on stop, or when ``previous`` (a commit) ends first.
        """
        getter = asyncio.ensure_future(buffer.get())
        stopper = asyncio.ensure_future(self._stop.wait())
        waited: set[asyncio.Future[Any]] = {getter, stopper}
        if previous is not None:
            waited.add(previous)
        try:
            await asyncio.wait(waited, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        raise TimeoutError

    async def _collect(
        self,
        buffer: asyncio.Queue[Delivery | None],
        reader: asyncio.Task[None],
        previous: asyncio.Task[bool] | None,
    ) -> tuple[list[Delivery], bool]:
        """Up to ``batch_size`` deliveries: ``batch_interval`` after the first, or later if need be.

        The batch closes after the interval only once the ``previous`` batch has committed.

        While the database is busy with one batch the next one keeps growing,
        so a busy database gets fewer, larger (cheaper per message) batches
        instead of a queue of small ones, each waiting its turn. Deliveries
        already buffered are taken without waiting.
        """
        loop = asyncio.get_running_loop()
        size = self.options.batch_size
        batch: list[Delivery] = []
        deadline: float | None = None
        while len(batch) < size:
            while batch and not buffer.empty() and len(batch) < size:
                item = buffer.get_nowait()
                if item is None:
                    return batch, True
                batch.append(item)
            if len(batch) >= size:
                break
            timeout: float | None = 1.0
            waiting_for: asyncio.Task[bool] | None = None
            if deadline is not None:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    if previous is None or previous.done():
                        break
                    timeout, waiting_for = None, previous  # more deliveries, or its commit
            try:
                item = await self._next(buffer, timeout, waiting_for)
            except TimeoutError:
                if self._stop.is_set():
                    break
                if deadline is None and reader.done():
                    return batch, True
                continue  # past the deadline, the check above ends the batch
            if item is None:
                return batch, True
            batch.append(item)
            if deadline is None:
                deadline = loop.time() + self.options.batch_interval
        return batch, False

    @staticmethod
    def _rows(batch: Sequence[Delivery]) -> Rows:
        """The batch's rows; ``problems`` by position in ``batch`` (what to dead-letter)."""
        decoded = [(i, d.envelope, len(d.raw)) for i, d in enumerate(batch) if d.envelope]
        rows = build_rows([(env, size) for _, env, size in decoded])
        rows.problems = {decoded[i][0]: problem for i, problem in rows.problems.items()}
        for index, d in enumerate(batch):
            if d.envelope is None:
                message, report = undecodable_rows(d.raw, d.error, d.queue)
                rows.messages.append(message)
                rows.reports.append(report)
                rows.problems[index] = str(d.error or "undecodable envelope")
        return rows

    async def _write(self, batch: list[Delivery], rows: Rows) -> dict[int, str] | None:
        """Commit ``batch``, retrying while the database is down.

        Returns the problems by position in ``batch`` (to dead-letter), or
        None when stopped before the database came back.
        """
        attempt = 0
        loop = asyncio.get_running_loop()
        extended = loop.time()
        while True:
            try:
                problems = await self._attempt(batch, rows)
            except StoreUnavailable as exc:
                attempt += 1
                self.stats.retries += 1
                delay = self._backoff(attempt)
                _log.warning(
                    "store unavailable, holding %d deliveries unacked, retry in %.2fs: %s",
                    len(batch),
                    delay,
                    exc,
                )
                if loop.time() - extended > self.options.lease / 3:
                    extended = loop.time()
                    await self._extend(batch)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                    return None
                continue
            self._account(batch)
            return problems

    async def _attempt(self, batch: list[Delivery], rows: Rows) -> dict[int, str]:
        """One write attempt, timed for :meth:`healthy` (waiting to retry is not stuck)."""
        self._writing_since = asyncio.get_running_loop().time()
        self.counters.inflight = len(batch)
        try:
            return await self._write_once(batch, rows)
        finally:
            self._writing_since = None
            self.counters.inflight = 0

    def _backoff(self, attempt: int) -> float:
        return jittered(attempt, self.options.retry_initial, self.options.retry_max, self._rng)

    async def _write_once(self, batch: list[Delivery], rows: Rows) -> dict[int, str]:
        """One attempt; if the database refuses some rows, every other row still goes in."""
        try:
            await self._store.write_rows(rows)
        except StoreDataError as exc:
            _log.warning("the store refused a batch, isolating the refused rows: %s", exc)
        else:
            return rows.problems
        refused = await refused_rows(self._store.write_rows, rows)
        problems = dict(rows.problems)
        reports: list[dict[str, object]] = []
        for index, d in enumerate(batch):
            if d.envelope is None:
                continue
            verdict = judge(d.envelope.id, d.envelope.topic, self._rows([d]), refused)
            reports += verdict.reports
            if verdict.problem is not None:
                problems.setdefault(index, verdict.problem)
        try:
            await self._store.write_rows(Rows(reports=reports))
        except StoreDataError as exc:  # printable text should never be refused; log it then
            _log.error("the store refused the reports of refused rows %s: %s", reports, exc)
        return problems

    def _account(self, batch: list[Delivery]) -> None:
        oldest = min((d.envelope.created_at for d in batch if d.envelope is not None), default=None)
        self.stats.persisted += len(batch)
        self.stats.batches += 1
        self.counters.processed = self.stats.persisted
        if oldest is not None:
            self.stats.lag = max((utcnow() - oldest).total_seconds(), 0.0)
            self.stats.max_lag = max(self.stats.max_lag, self.stats.lag)

    async def _extend(self, batch: list[Delivery]) -> None:
        for d in batch:
            try:
                await d.extend(self.options.lease)
            except Exception as exc:  # best effort: a redelivery is harmless
                _log.debug("could not extend a lease: %s", exc)

    async def _settle_all(self, batch: list[Delivery], problems: dict[int, str]) -> None:
        """Ack what was stored; dead-letter the rest (undecodable, invalid or refused)."""
        jobs = [self._settle(d, problems.get(index)) for index, d in enumerate(batch)]
        for start in range(0, len(jobs), _ACK_CHUNK):
            await asyncio.gather(*jobs[start : start + _ACK_CHUNK])

    async def _settle(self, d: Delivery, problem: str | None) -> None:
        try:
            if problem is None:
                await d.ack()
            else:
                self.stats.dead_lettered += 1
                self.counters.failed = self.stats.dead_lettered
                _log.warning("dead-lettering a delivery: %s", problem)
                await d.dead(problem)
        except Exception as exc:  # the bus redelivers it; applying it again is a no-op
            _log.warning("could not settle a delivery (it will be redelivered): %s", exc)
