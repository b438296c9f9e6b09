"""Deliveries and consumers of the amqp transport.

Leases: RabbitMQ keeps an unacknowledged message with its consumer until the
consumer's channel or connection closes (a dead process gives it back at
once), or until the broker's ``consumer_timeout`` (30 min by default) closes
the channel. To give the same contract as the embedded bus, a delivery not
settled within the queue's lease is also released here (``nack`` with
requeue) so another consumer gets it; :meth:`extend` pushes that deadline.
The leases of a consumer run on one timer (:mod:`._leases`), and its acks
go out in batches (:mod:`._acks`).

A delivery given back unprocessed (:meth:`AmqpDelivery.release`, and the
prefetched ones of a stopped consumer) is replaced by a confirmed copy at the
same attempt, since a requeue would count as an attempt on a quorum queue.

A retry due within ``HOLD_RETRIES_UNDER`` seconds is held here, unacknowledged,
and then replaced by a confirmed copy on the work queue; only longer delays
(or more held retries than half the prefetch) go through a wait queue, whose
expiry the broker dead-letters back. A quorum queue's at-least-once
dead-lettering can stall under leader changes (RabbitMQ 3.10: a retry held
for minutes until the next change, seen in the chaos campaign); a held retry
does not depend on it. If the process or its channel dies meanwhile, the
broker gives the original back at once: nothing is lost, the retry only comes
sooner.

A consumer takes aiormq's deliveries as they come, as aio-pika's
``Queue.consume`` does underneath, without an ``aio_pika.IncomingMessage``
per delivery (whose attribute guards cost more than the rest of a delivery
on the client); one is made only when a copy of the message is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aio_pika import IncomingMessage
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.abc import DeliveredMessage

from stalwart.bus._delivery import SettleOnce
from stalwart.bus._transport import QueueSpec
from stalwart.bus.amqp._acks import Acks
from stalwart.bus.amqp._codec import decode_incoming
from stalwart.bus.amqp._leases import Leases

__all__ = ["HOLD_RETRIES_UNDER", "AmqpDelivery", "Consumer", "Settler"]

log = logging.getLogger("stalwart.bus.amqp")

# Publishes a confirmed copy of a delivery: (delivery, delay or None for the
# dead-letter queue, reason, attempt number the copy carries).
Settler = Callable[["AmqpDelivery", float | None, str, int], Awaitable[None]]

# Retries due sooner than this are held by the consumer, not sent through a wait queue.
HOLD_RETRIES_UNDER = 10.0


class AmqpDelivery(SettleOnce):
    """One message handed to one consumer; settle it exactly once."""

    _log = log
    _copy_errors = (Exception,)  # requeued instead: counted as a redelivery, not lost

    def __init__(self, consumer: Consumer, delivered: DeliveredMessage) -> None:
        self._consumer = consumer
        self._delivered = delivered
        self._message: AbstractIncomingMessage | None = None
        self._generation = consumer.generation
        self.queue = consumer.spec.name
        self.raw = delivered.body
        properties = delivered.header.properties
        self._id = properties.message_id
        envelope, error, attempt = decode_incoming(
            delivered.body, properties.headers, bool(delivered.redelivered)
        )
        self._envelope = envelope
        self._error = error
        self.attempt = attempt
        self._settled = False

    def hand_out(self) -> None:
        """Start the lease: called when the consumer yields it, not while prefetched."""
        if not self._settled:
            self._consumer.leases.hold(self, self._consumer.spec.lease)

    @property
    def message(self) -> AbstractIncomingMessage:
        """aio-pika's view of the message (its properties), for publishing a copy."""
        if self._message is None:
            self._message = IncomingMessage(self._delivered, no_ack=False)
        return self._message

    @property
    def spec(self) -> QueueSpec:
        return self._consumer.spec

    @property
    def stale(self) -> bool:
        """True once the channel it came on is gone (the broker redelivers it)."""
        if self._generation != self._consumer.generation:
            return True
        return self._delivered.channel.is_closed

    def lease_expired(self) -> None:
        if self._settled:
            return
        self._settled = True
        log.warning(
            "lease expired on message %s in %s; released for redelivery",
            self._id,
            self.queue,
        )
        self._consumer.spawn(self.settle_raw(requeue=True))

    @property
    def _described(self) -> str:
        return f"message {self._id} in {self.queue}"

    def _claimed(self, action: str) -> bool:
        if self.stale:
            log.info(
                "message %s in %s came on a lost channel; the broker redelivers it (%s ignored)",
                self._id,
                self.queue,
                action,
            )
            return False
        self._consumer.leases.drop(self)
        return True

    async def settle_raw(self, *, requeue: bool | None) -> None:
        """ack (requeue None, sent in a batch) or nack; a lost channel is logged: the
        broker redelivers."""
        tag = self._delivered.delivery_tag
        current = self._generation == self._consumer.generation
        try:
            if tag is None:
                pass  # not a consumed delivery: nothing to settle
            elif requeue is None and current:
                self._consumer.acks.ack(tag)
            elif requeue is None:
                await self._delivered.channel.basic_ack(tag)
            else:
                if current:
                    self._consumer.acks.closed(tag)
                await self._delivered.channel.basic_nack(tag, requeue=requeue)
        except CONNECTION_EXCEPTIONS as exc:
            log.info("settling %s failed (%s); it will be redelivered", self._id, exc)
        finally:
            self._consumer.settled(self)

    async def _broker_ack(self) -> None:
        await self.settle_raw(requeue=None)

    async def _broker_requeue(self) -> None:
        await self.settle_raw(requeue=True)

    async def _retry_after(self, wait: float, reason: str) -> None:
        if wait < HOLD_RETRIES_UNDER and self._consumer.may_hold():
            self._consumer.hold(self._held_retry(wait, reason))
        else:
            await self._replace(wait, reason, self.attempt + 1)

    async def _held_retry(self, wait: float, reason: str) -> None:
        """After ``wait``, a confirmed copy on the work queue replaces this delivery;
        none if its channel died meanwhile (the broker has given it back)."""
        await asyncio.sleep(wait)
        if self.stale:
            return
        try:
            await self._replace(0.0, reason, self.attempt + 1)
        except self._copy_errors as exc:  # given back to the broker by _replace
            log.info("retrying %s after %.2fs failed: %s", self._described, wait, exc)

    async def _publish_copy(self, delay: float | None, reason: str, attempt: int) -> None:
        # A release is a confirmed copy at the same attempt: a plain requeue would
        # count as a redelivery (x-delivery-count) and so as an attempt.
        await self._consumer.settler(self, delay, reason, attempt)

    def _release_failed(self, exc: Exception) -> None:
        log.info("releasing %s by a copy failed: %s", self._id, exc)

    async def extend(self, seconds: float) -> None:
        if not self._settled:
            self._consumer.leases.hold(self, max(seconds, 0.001))


class Consumer:
    """A recorded consumer: re-attached on every reconnect, strongly held by the transport."""

    def __init__(self, spec: QueueSpec, queue_name: str, prefetch: int, settler: Settler) -> None:
        self.spec = spec
        self.queue_name = queue_name
        self.prefetch = max(1, prefetch)
        self.settler = settler
        self.inbox: asyncio.Queue[AmqpDelivery | None] = asyncio.Queue()
        self.generation = 0
        self.inflight = 0
        self.leases: Leases[AmqpDelivery] = Leases(AmqpDelivery.lease_expired)
        self.acks = Acks()
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._holds: set[asyncio.Task[None]] = set()
        self._retired = False

    async def attach(self, channel: AbstractChannel) -> None:
        """Start consuming on a fresh channel (after connect or reconnect)."""
        self.generation += 1
        self.inflight = 0
        self.leases.clear()
        underlay = await channel.get_underlay_channel()
        self.acks.reset(underlay)
        await channel.set_qos(prefetch_count=self.prefetch)
        queue = await channel.get_queue(self.queue_name, ensure=True)
        self._channel, self._queue = channel, queue
        started = await underlay.basic_consume(queue.name, self._on_message, no_ack=False)
        self._tag = started.consumer_tag

    async def _on_message(self, delivered: DeliveredMessage) -> None:
        self.inflight += 1
        if delivered.delivery_tag is not None:
            self.acks.received(delivered.delivery_tag)
        delivery = AmqpDelivery(self, delivered)
        if self._retired:
            await delivery.release()
            return
        self.inbox.put_nowait(delivery)

    @property
    def finished(self) -> bool:
        """Retired with its channel closed: nothing of it can be settled any more."""
        return self._retired and self._channel is None

    def settled(self, _delivery: AmqpDelivery) -> None:
        self.inflight = max(0, self.inflight - 1)
        if self._retired and self.inflight == 0:
            self.spawn(self.close())

    def may_hold(self) -> bool:
        """Whether one more retry may be held (held ones keep their prefetch slots)."""
        return len(self._holds) < self.prefetch // 2

    def hold(self, retry: Coroutine[Any, Any, None]) -> None:
        """Run a held retry; cancelled when the consumer closes (the broker then gives
        its delivery back)."""
        task = asyncio.ensure_future(retry)
        self._holds.add(task)
        task.add_done_callback(self._holds.discard)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a settle in the background; owned here and awaited on close."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def retire(self) -> None:
        """Stop taking messages: cancel the consumer and release what was not yielded.

        Deliveries already yielded stay settleable (the channel stays open)
        until they are all settled or :meth:`close` is called.
        """
        self._retired = True
        queue, tag = self._queue, self._tag
        self._queue = self._tag = None
        channel = self._channel
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS, TimeoutError):
                if queue is not None and tag is not None:
                    await queue.cancel(tag, timeout=5.0)
        while not self.inbox.empty():
            item = self.inbox.get_nowait()
            if item is not None and not item.stale:
                await item.release()
        if self.inflight == 0:
            await self.close()

    async def close(self) -> None:
        """Send the acks made, then close the channel: the broker requeues every
        unsettled delivery."""
        for held in self._holds:
            held.cancel()
        await self.acks.flush()
        self.generation += 1
        self.leases.clear()
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS, TimeoutError):
                await asyncio.wait_for(channel.close(), timeout=5.0)
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current]
        if pending:
            await asyncio.wait(pending, timeout=5.0)

    def stop(self) -> None:
        """Wake the iterator so that it ends (transport closing)."""
        self.inbox.put_nowait(None)
