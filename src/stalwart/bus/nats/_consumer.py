"""Deliveries and pull consumers of the nats transport.

A :class:`Puller` serves one ``consume()`` call: it pulls from every
consumer of the service (one per subject filter) with its own lingering pull
requests, so each message is handed on as soon as it arrives. ``prefetch``
bounds the unsettled deliveries of each filter, so that no filter starves
behind another's waiting request; a busy filter asks again once a quarter
of it is free, not for every settled message.

Leases are JetStream's ack wait (the queue's lease): a delivery not settled
in time goes to another consumer. Deliveries pulled but not yet handed out
are kept leased with in-progress acks; :meth:`NatsDelivery.extend` sends one
and keeps sending them for as long as asked. A retry is a NAK with the
backoff as its delay (JetStream counts the delivery, so the attempt goes up);
a release or a requeue is a copy on the service's direct subject carrying
the attempt, then an ack, so that giving a message back counts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from stalwart.bus._delivery import SettleOnce
from stalwart.bus._transport import QueueSpec
from stalwart.bus.nats._names import ATTEMPT_HEADER, TOPIC_HEADER, Filter, topic_of
from stalwart.envelope import Envelope, decode
from stalwart.errors import DecodeError, StalwartError

__all__ = ["Copier", "NatsDelivery", "Puller", "header_int"]

log = logging.getLogger("stalwart.bus.nats")

# Publishes a copy of a delivery and waits for JetStream's ack: (delivery,
# dead (True) or back on the direct subject (False), reason, attempt it carries).
Copier = Callable[["NatsDelivery", bool, str, int], Awaitable[None]]

_EXPIRES = 3.0  # seconds a pull request waits on the server for messages
_SETTLE_ERRORS = (NatsError, OSError, asyncio.TimeoutError)


def header_int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class NatsDelivery(SettleOnce):
    """One message handed to one consumer; settle it exactly once."""

    _log = log
    _copy_errors = (StalwartError,)  # NAKed instead: counted as an attempt, not lost

    def __init__(self, puller: Puller, msg: Msg, source: int) -> None:
        self._puller = puller
        self.source = source  # which of the puller's consumers delivered it
        self._msg = msg
        self.queue = puller.spec.name
        self.raw = msg.data
        self.subject = msg.subject
        envelope: Envelope | None
        try:
            envelope, self._error = decode(msg.data), None
        except DecodeError as exc:
            envelope, self._error = None, exc
        headers = msg.headers or {}
        base = header_int(headers.get(ATTEMPT_HEADER), envelope.attempt if envelope else 1)
        self.attempt = max(1, base + msg.metadata.num_delivered - 1)
        if envelope is not None and envelope.attempt != self.attempt:
            envelope = envelope.evolve(attempt=self.attempt)
        self._envelope = envelope
        self._settled = False
        self._renewed = asyncio.get_running_loop().time()
        self._renewer: asyncio.Task[None] | None = None

    @property
    def msg(self) -> Msg:
        return self._msg

    @property
    def spec(self) -> QueueSpec:
        return self._puller.spec

    @property
    def settled(self) -> bool:
        return self._settled

    @property
    def topic(self) -> str:
        """The topic it was published on (a copy on a direct subject carries it in a header)."""
        copied = (self._msg.headers or {}).get(TOPIC_HEADER)
        return copied or topic_of(self._puller.namespace, self.subject)

    @property
    def _described(self) -> str:
        return f"message on {self.subject} in {self.queue}"

    def _claimed(self, action: str) -> bool:
        if self._renewer is not None:
            self._renewer.cancel()
        self._puller.settled(self)
        return True

    async def _send(self, action: Callable[[], Awaitable[None]], what: str) -> None:
        try:
            await action()
        except _SETTLE_ERRORS as exc:
            log.info("%s of a message in %s failed (%s); it is redelivered", what, self.queue, exc)

    async def renew(self) -> None:
        """An in-progress ack: the lease starts again."""
        self._renewed = asyncio.get_running_loop().time()
        await self._send(self._msg.in_progress, "renewing the lease")

    def hand_out(self) -> None:
        """Renew a lease that waited long in the prefetch buffer, then hand it on."""
        elapsed = asyncio.get_running_loop().time() - self._renewed
        if elapsed > self._puller.spec.lease / 10:
            self._puller.spawn(self.renew())

    async def _broker_ack(self) -> None:
        await self._send(self._msg.ack, "ack")

    async def _broker_requeue(self) -> None:
        await self._send(self._msg.nak, "nak")

    async def _retry_after(self, wait: float, reason: str) -> None:
        # A NAK with a delay: JetStream counts the delivery, so the attempt goes up.
        if wait > 0:
            due = asyncio.get_running_loop().time() + wait
            self._puller.delays[self._msg.metadata.sequence.stream] = due
        await self._send(lambda: self._msg.nak(delay=wait), "retry")

    async def _publish_copy(self, delay: float | None, reason: str, attempt: int) -> None:
        await self._puller.copier(self, delay is None, reason, attempt)

    def _release_failed(self, exc: Exception) -> None:
        log.info("releasing a message of %s by a copy failed: %s", self.queue, exc)

    async def nak(self) -> None:
        """Give it back now, the delivery counted (closing: no copy to wait for)."""
        if self._claim("nak"):
            await self._broker_requeue()

    async def extend(self, seconds: float) -> None:
        if self._settled:
            return
        await self.renew()
        lease = self._puller.spec.lease
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        if seconds > lease:
            self._renewer = asyncio.create_task(self._keep_renewing(seconds, lease / 2))

    async def _keep_renewing(self, seconds: float, every: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while not self._settled and loop.time() + every < until:
            await asyncio.sleep(every)
            if not self._settled:
                await self.renew()


@dataclass(slots=True)
class _Request:
    """The pull request a filter's consumer has on the server."""

    remaining: int = 0
    deadline: float = 0.0
    holding: int = 0  # its deliveries not yet settled

    def open(self, now: float) -> bool:
        return self.remaining > 0 and now < self.deadline


class Puller:
    """Pulls one service's deliveries from its consumers into ``inbox``."""

    def __init__(
        self,
        nc: Client,
        *,
        namespace: str,
        stream: str,
        spec: QueueSpec,
        consumers: list[tuple[str, Filter]],
        prefetch: int,
        copier: Copier,
        delays: dict[int, float],
    ) -> None:
        self.nc = nc
        self.namespace = namespace
        self.stream = stream
        self.spec = spec
        self.consumers = consumers
        self.prefetch = max(1, prefetch)
        self._least = max(1, self.prefetch // 4)  # the smallest pull worth a request
        self.copier = copier
        self.delays = delays  # stream sequence -> loop time it is due back (NAKed with a delay)
        self.inbox: asyncio.Queue[NatsDelivery | None] = asyncio.Queue()
        self.unsettled: set[NatsDelivery] = set()
        self.buffered: set[NatsDelivery] = set()
        self._requests = [_Request() for _ in consumers]
        self._wake = asyncio.Event()
        self._subs: list[Subscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._stopping = False
        self._closing = False

    @property
    def finished(self) -> bool:
        """Stopped, unsubscribed and with nothing left to settle: it can be forgotten."""
        return self._stopping and not self._subs and not self.unsettled

    async def start(self) -> None:
        for index, _ in enumerate(self.consumers):
            inbox = self.nc.new_inbox()
            self._subs.append(await self.nc.subscribe(inbox, cb=self._callback(index)))
        self._loop_task = asyncio.create_task(self._pull_forever(), name=f"pull:{self.spec.name}")
        self._keeper = asyncio.create_task(self._keep_buffered_leased())

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a settle in the background; owned here and awaited on close."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- pulling -----------------------------------------------------------

    async def _pull_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wake.clear()
            now = loop.time()
            for index, request in enumerate(self._requests):
                if not request.open(now):
                    await self._pull(index, request, now)
            deadlines = [r.deadline for r in self._requests if r.open(now)]
            wait = max(0.01, min(deadlines) - now + 0.05) if deadlines else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _pull(self, index: int, request: _Request, now: float) -> None:
        """Ask this filter's consumer for as many messages as it has room for."""
        room = self.prefetch - request.holding
        if room < (self._least if request.holding else 1):
            return  # a busy filter waits for room for several: a pull request costs as much
        name, _ = self.consumers[index]
        request.remaining, request.deadline = room, now + _EXPIRES
        body = f'{{"batch":{room},"expires":{int((_EXPIRES - 0.1) * 1e9)}}}'.encode()
        try:
            await self.nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{name}",
                body,
                reply=self._subs[index].subject,
            )
        except _SETTLE_ERRORS as exc:
            log.info("pulling from %s failed (%s); trying again", name, exc)
            request.deadline = now + 0.5

    def _callback(self, index: int) -> Callable[[Msg], Awaitable[None]]:
        async def on_message(msg: Msg) -> None:
            self._arrived(index, msg)

        return on_message

    def _arrived(self, index: int, msg: Msg) -> None:
        request = self._requests[index]
        status = (msg.headers or {}).get("Status")
        if status and not msg.data:
            if status != "100":  # 404/408/409: that pull request is over
                request.remaining = 0
                self._wake.set()
            return
        request.remaining -= 1
        if request.remaining <= 0:
            self._wake.set()
        _, owner = self.consumers[index]
        if not owner.accepts(self.namespace, msg.subject) or self._owner(msg.subject) != index:
            self.spawn(_quiet(msg.ack()))  # another filter of this service delivers it
            return
        delivery = NatsDelivery(self, msg, index)
        self.unsettled.add(delivery)
        self._requests[index].holding += 1
        if self._stopping:
            self.spawn(delivery.nak() if self._closing else delivery.release())
            return
        if delivery.envelope is not None and delivery.envelope.expired():
            self.spawn(_logged(delivery.dead("expired: its ttl passed before delivery")))
            return
        if delivery.attempt > self.spec.max_attempts:
            reason = (
                f"lease expired {self.spec.max_attempts} times: each consumer died or stalled "
                "without renewing its lease"
            )
            self.spawn(_logged(delivery.dead(reason)))
            return
        self.buffered.add(delivery)
        self.inbox.put_nowait(delivery)

    def _owner(self, subject: str) -> int | None:
        """The first filter that accepts ``subject``: the one that delivers it."""
        for index, (_, candidate) in enumerate(self.consumers):
            if candidate.accepts(self.namespace, subject):
                return index
        return None

    async def _keep_buffered_leased(self) -> None:
        """In-progress acks for deliveries waiting in the buffer, so their lease holds."""
        every = max(0.05, self.spec.lease / 3)
        while True:
            await asyncio.sleep(every)
            for delivery in list(self.buffered):
                if not delivery.settled:
                    await delivery.renew()

    def take(self, delivery: NatsDelivery) -> None:
        self.buffered.discard(delivery)
        delivery.hand_out()

    def settled(self, delivery: NatsDelivery) -> None:
        if delivery in self.unsettled:
            self._requests[delivery.source].holding -= 1
        self.unsettled.discard(delivery)
        self.buffered.discard(delivery)
        request = self._requests[delivery.source]
        now = asyncio.get_running_loop().time()
        if self.prefetch - request.holding == self._least and not request.open(now):
            self._wake.set()  # room for a pull again

    # -- stopping ----------------------------------------------------------

    async def retire(self) -> None:
        """Stop pulling; give back (a copy at the same attempt) what was not handed out.

        Handed-out deliveries stay settleable. A pull request still open on the
        server may bring more until it expires: those are given back as they come.
        """
        await self._stop_pulling()
        while not self.inbox.empty():
            item = self.inbox.get_nowait()
            if item is not None and not item.settled:
                await item.release()
        self.spawn(self._unsubscribe_after(_EXPIRES))

    async def close(self) -> None:
        """Transport closing: every unsettled delivery goes back now (NAK), the iterator ends."""
        self._closing = True
        await self._stop_pulling()
        for delivery in list(self.unsettled):
            await delivery.nak()
        await self._unsubscribe_after(0.0)
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        self.inbox.put_nowait(None)

    async def _stop_pulling(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._keeper is not None:
            self._keeper.cancel()
        if self._loop_task is not None:
            task, self._loop_task = self._loop_task, None
            await asyncio.wait({task}, timeout=5.0)

    async def _unsubscribe_after(self, seconds: float) -> None:
        if seconds:
            await asyncio.sleep(seconds)
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(*_SETTLE_ERRORS):
                await sub.unsubscribe()


async def _quiet(awaitable: Awaitable[None]) -> None:
    with contextlib.suppress(*_SETTLE_ERRORS):
        await awaitable


async def _logged(awaitable: Awaitable[None]) -> None:
    try:
        await awaitable
    except StalwartError as exc:
        log.warning("dead-lettering a message failed (%s); it is redelivered", exc)
