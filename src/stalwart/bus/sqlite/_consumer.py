"""Consumers of the embedded bus: batched claims, leases, settlement, wake-ups.

A consumer claims up to its free prefetch in one statement, hands the rows
out one by one, and sleeps on an event when the queue is empty. The event is
set by a local commit, by a datagram from another process, when one of its
deliveries is settled, or by a timer for the next delayed row; a slow
fallback poll covers anything else, so an idle consumer costs nothing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final, TypeVar

from stalwart.backoff import jittered
from stalwart.bus._delivery import Decoded
from stalwart.bus._transport import QueueSpec, backoff_delay
from stalwart.bus.sqlite import _ops as ops
from stalwart.bus.sqlite._batch import TurnBatcher
from stalwart.bus.sqlite._writer import Op
from stalwart.envelope import Envelope, decode
from stalwart.errors import BrokerUnavailable, DecodeError, TransportClosed, TransportError

__all__ = ["SqliteConsumer", "SqliteDelivery", "ack_together"]

_log = logging.getLogger("stalwart.bus.sqlite")

_FALLBACK_POLL: Final = 1.0
_BATCH_LINGER: Final = 0.002
_T = TypeVar("_T")
Submit = Callable[[Op[_T]], asyncio.Future[_T]]


class SqliteDelivery(Decoded):
    """One leased row of one queue; settle it exactly once."""

    __slots__ = (
        "_consumer",
        "_lease",
        "_released",
        "_settled",
        "attempt",
        "lease_until",
        "queue",
        "raw",
    )

    def __init__(
        self, consumer: SqliteConsumer, row_id: int, raw: bytes, attempt: int, lease_until: float
    ) -> None:
        self._consumer = consumer
        self.queue = consumer.queue
        self.raw = raw
        self.attempt = attempt
        self.lease_until = lease_until
        self._lease: ops.Lease = (row_id, consumer.owner, attempt)
        self._settled = False
        self._released = False
        self._envelope: Envelope | None = None
        self._error: DecodeError | None = None
        try:
            envelope = decode(raw)
        except DecodeError as exc:
            self._error = exc
        else:
            if envelope.attempt != attempt:
                envelope = envelope.model_copy(update={"attempt": attempt})
            self._envelope = envelope

    @property
    def row_id(self) -> int:
        return self._lease[0]

    def __repr__(self) -> str:
        return f"<SqliteDelivery queue={self.queue!r} row={self._lease[0]} attempt={self.attempt}>"

    async def ack(self) -> None:
        await self._consumer.settle(self, None, "ack")

    async def retry(self, delay: float | None, reason: str) -> bool:
        spec = self._consumer.spec
        wait = backoff_delay(spec, self.attempt) if delay is None else delay
        op = partial(
            ops.retry,
            queue=self.queue,
            lease=self._lease,
            max_attempts=spec.max_attempts,
            delay=wait,
            reason=reason,
        )
        result = await self._consumer.settle(self, op, "retry")
        return result is not False

    async def dead(self, reason: str) -> None:
        await self._consumer.settle(
            self, partial(ops.settle_dead, lease=self._lease, reason=reason), "dead"
        )

    async def release(self) -> None:
        await self._consumer.settle(
            self, partial(ops.release, queue=self.queue, leases=[self._lease]), "release"
        )

    async def extend(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("extend needs a positive number of seconds")
        if self._settled:
            raise TransportError(f"{self!r} is settled or released; there is no lease to renew")
        self._consumer.check_open()
        held = await self._consumer.submit(partial(ops.extend, lease=self._lease, seconds=seconds))
        if held:
            self.lease_until = time.time() + seconds
        else:
            _log.warning(
                "lease of %r had already expired; the message may be processed again elsewhere",
                self,
            )


async def ack_together(deliveries: Sequence[SqliteDelivery], submit: Submit[list[bool]]) -> None:
    """Ack ``deliveries`` (of any consumers of one transport) in one writer operation.

    Refuses the whole batch, settling none, if one is settled or released already
    or appears twice.
    """
    for delivery in deliveries:
        delivery._consumer.check_settleable(delivery)
    if len({id(d) for d in deliveries}) < len(deliveries):
        raise TransportError("a delivery appears twice in one ack_all; settle a delivery once")
    for delivery in deliveries:
        delivery._consumer.mark_settled(delivery)
    try:
        held = await submit(partial(ops.settle_acks, leases=[d._lease for d in deliveries]))
    except BaseException:
        for delivery in deliveries:
            delivery._consumer.restore(delivery)
        raise
    for delivery, still_held in zip(deliveries, held, strict=True):
        if not still_held:
            _warn_expired("ack", delivery)


def _warn_expired(what: str, delivery: SqliteDelivery) -> None:
    _log.warning(
        "%s of %r found its lease expired; the message may be processed again", what, delivery
    )


class SqliteConsumer:
    """The state of one ``consume()`` iterator: its leases, buffer and wake-up event."""

    def __init__(
        self,
        queue: str,
        prefetch: int,
        submit: Submit[Any],
        router: ops.Router,
        is_open: Callable[[], bool],
        submit_late: Submit[Any],
    ) -> None:
        if prefetch < 1:
            raise ValueError("prefetch must be >= 1")
        self.queue = queue
        self.prefetch = prefetch
        self.owner = secrets.randbits(62) + 1
        self.wake = asyncio.Event()
        self.spec = QueueSpec(name=queue, patterns=())
        self._submit: Submit[Any] = submit
        self._router = router
        self._is_open = is_open
        self._submit_late: Submit[Any] = submit_late
        self._acks: TurnBatcher[ops.Lease, bool] = TurnBatcher(
            submit, lambda leases: partial(ops.settle_acks, leases=leases)
        )
        self._unsettled: dict[int, SqliteDelivery] = {}
        self._buffer: collections.deque[SqliteDelivery] = collections.deque()
        self._stopped = False

    def check_open(self) -> None:
        if not self._is_open():
            raise TransportClosed("the embedded bus transport is closed; open a new one")

    def submit(self, fn: Op[_T]) -> Awaitable[_T]:
        return self._submit(fn)

    async def settle(self, delivery: SqliteDelivery, fn: Op[Any] | None, what: str) -> Any:
        """Run ``fn`` (None: an ack, batched with this loop turn's others) once per delivery."""
        self.check_open()
        self.check_settleable(delivery)
        self.mark_settled(delivery)
        try:
            result = await (self._acks.add(delivery._lease) if fn is None else self._submit(fn))
        except BaseException:
            self.restore(delivery)
            raise
        if result is None or (result is False and what != "retry"):
            _warn_expired(what, delivery)
        return result

    def check_settleable(self, delivery: SqliteDelivery) -> None:
        if delivery._released:
            raise TransportError(
                f"{delivery!r} was released for redelivery when the transport closed; "
                "settle deliveries before closing it"
            )
        if delivery._settled:
            raise TransportError(f"{delivery!r} is already settled; settle a delivery once")

    def mark_settled(self, delivery: SqliteDelivery) -> None:
        # The slot is free as soon as the settlement is queued: the next claim
        # then joins the same transaction as this ack instead of needing its own.
        delivery._settled = True
        self._unsettled.pop(delivery.row_id, None)
        self.wake.set()

    def restore(self, delivery: SqliteDelivery) -> None:
        """Its settlement failed: the delivery is held again (unless released meanwhile)."""
        if not delivery._released:
            delivery._settled = False
            self._unsettled[delivery.row_id] = delivery

    @property
    def holding(self) -> bool:
        """True while deliveries handed out by this consumer are still unsettled."""
        return bool(self._unsettled)

    def _give_back(self, deliveries: list[SqliteDelivery]) -> list[ops.Lease]:
        for delivery in deliveries:
            delivery._settled = delivery._released = True
            self._unsettled.pop(delivery.row_id, None)
        return [d._lease for d in deliveries]

    def take_unsettled(self) -> list[ops.Lease]:
        """Stop, and take every unsettled lease (the transport closes and releases them)."""
        self._stopped = True
        self._buffer.clear()
        return self._give_back(list(self._unsettled.values()))

    async def stop(self) -> None:
        """Stop claiming; release what was claimed but not handed out.

        Deliveries already handed out stay settleable, so that a graceful stop
        lets in-flight handlers finish; ``close()`` releases any left.
        """
        if self._stopped:
            return
        self._stopped = True
        leases = self._give_back(list(self._buffer))
        self._buffer.clear()
        if leases and self._is_open():
            try:
                await self._submit(partial(ops.release, queue=self.queue, leases=leases))
            except TransportError as exc:
                _log.warning(
                    "releasing %d deliveries of %s failed: %s", len(leases), self.queue, exc
                )

    async def _release_late(self, leases: list[ops.Lease]) -> None:
        """Hand back rows a claim leased while this consumer was being stopped."""
        try:
            await self._submit_late(partial(ops.release, queue=self.queue, leases=leases))
        except TransportError as exc:
            _log.warning(
                "%d deliveries of %s stay leased until their lease ends: %s",
                len(leases),
                self.queue,
                exc,
            )

    async def _sleep(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0.0)):
                await self.wake.wait()

    async def deliveries(self) -> AsyncIterator[SqliteDelivery]:
        """One delivery at a time, its lease renewed if it waited in the buffer long."""
        while await self._filled():
            delivery = self._buffer.popleft()
            if delivery.lease_until - time.time() < self.spec.lease / 2:
                await delivery.extend(self.spec.lease)
            yield delivery

    async def batches(self) -> AsyncIterator[list[SqliteDelivery]]:
        """Every delivery one claim leased, at once (their leases have just begun)."""
        while await self._filled():
            batch = list(self._buffer)
            self._buffer.clear()
            yield batch

    async def _filled(self) -> bool:
        """Claim until the buffer holds deliveries; False once the consumer ends."""
        failures = 0
        lingered = False
        while self._is_open() and not self._stopped:
            if self._buffer:
                return True
            self.wake.clear()
            free = self.prefetch - len(self._unsettled)
            if free <= 0:
                await self._sleep(_FALLBACK_POLL)
                continue
            if self._unsettled and free < self.prefetch / 2 and not lingered:
                # Busy: give a burst of settlements a moment so claims come in batches.
                lingered = True
                await self._sleep(_BATCH_LINGER)
                continue
            lingered = False
            try:
                claimed = await self._submit(
                    partial(
                        ops.claim,
                        router=self._router,
                        queue=self.queue,
                        owner=self.owner,
                        limit=free,
                    )
                )
            except BrokerUnavailable as exc:
                failures += 1
                pause = jittered(failures, 0.1, 5.0)
                _log.warning(
                    "claiming from %s failed (%s); retrying in %.2f s", self.queue, exc, pause
                )
                await asyncio.sleep(pause)
                continue
            failures = 0
            self.spec = claimed.spec
            if claimed.rows and (self._stopped or not self._is_open()):
                await self._release_late([(r[0], self.owner, r[2]) for r in claimed.rows])
                return False
            if claimed.rows:
                until = time.time() + self.spec.lease
                for row_id, raw, attempt in claimed.rows:
                    delivery = SqliteDelivery(self, row_id, raw, attempt, until)
                    self._unsettled[row_id] = delivery
                    self._buffer.append(delivery)
                continue
            timeout = _FALLBACK_POLL
            if claimed.next_at is not None:
                timeout = min(timeout, claimed.next_at - time.time() + 0.001)
            await self._sleep(timeout)
        return False
