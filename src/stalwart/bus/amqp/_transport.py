"""The :class:`AmqpTransport` (the package docstring describes the backend)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import aiormq
from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aio_pika.exceptions import (
    CONNECTION_EXCEPTIONS,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    DeliveryError,
)
from aiormq.exceptions import ChannelAccessRefused

from stalwart.bus._transport import DeadLetter, Delivery, EncodedMessage, QueueSpec, QueueStats
from stalwart.bus.amqp import _admin
from stalwart.bus.amqp._channels import find_queue, gate, open_channel, temporary_channel
from stalwart.bus.amqp._codec import Outgoing, copy_message, encoded_message, to_message
from stalwart.bus.amqp._conn import Connector, split_urls
from stalwart.bus.amqp._delivery import AmqpDelivery, Consumer
from stalwart.bus.amqp._directory import Directory
from stalwart.bus.amqp._names import (
    ATTEMPT_HEADER,
    DEAD_KEY_HEADER,
    DIED_AT_HEADER,
    EPHEMERAL_QUEUE_ARGUMENTS,
    ERROR_HEADER,
    QUEUE_HEADER,
    REASON_HEADER,
    QueueType,
    dead_queue,
    directory_queue,
    dlx_exchange,
    ladder_between,
    lossless_queue_arguments,
    quantise_delay,
    wait_queue,
    wait_queue_arguments,
    work_queue,
    work_queue_arguments,
)
from stalwart.envelope import DEFAULT_MAX_SIZE, Envelope, utcnow
from stalwart.errors import (
    BrokerUnavailable,
    ConfigError,
    PublishRefused,
    TransportClosed,
    TransportError,
)
from stalwart.ids import new_id

__all__ = ["AmqpTransport"]

log = logging.getLogger("stalwart.bus.amqp")

_WAIT_RESCAN = 60.0  # seconds between full scans for a service's wait queues in queue_stats

_T = TypeVar("_T")
_A = TypeVar("_A")


def _ssl_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None, verify: bool
) -> ssl.SSLContext | None:
    if not (ca_file or cert_file):
        return None
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class AmqpTransport:
    """A :class:`~stalwart.bus.Transport` on RabbitMQ.

    ``url`` may list several nodes (``amqp://u:p@h1/,amqp://u:p@h2/``);
    ``amqps://`` uses TLS, with ``ca_file``/``cert_file``/``key_file`` for a
    private CA or client certificates. Unknown options (meant for other
    transports) are ignored so that one settings table fits every backend.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "stalwart",
        queue_type: QueueType = "quorum",
        max_message_size: int = DEFAULT_MAX_SIZE,
        confirm_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        tls_verify: bool = True,
        **ignored: Any,
    ) -> None:
        if queue_type not in ("quorum", "classic"):
            raise ConfigError(f"queue_type {queue_type!r} is not 'quorum' or 'classic'")
        self._urls = split_urls(url)
        self.exchange = exchange
        self.queue_type: QueueType = queue_type
        self.max_message_size = max_message_size
        self.confirm_timeout = confirm_timeout
        self._connector = Connector(
            self._urls,
            on_connected=self._replay,
            connect_timeout=connect_timeout,
            ssl_context=_ssl_context(ca_file, cert_file, key_file, tls_verify),
        )
        self.url = self._connector.display
        self._specs: dict[str, QueueSpec] = {}
        self._consumers: set[Consumer] = set()
        self._retired: set[Consumer] = set()
        self._waits: set[str] = set()
        self._wait_seen: dict[str, tuple[float, list[str]]] = {}  # service -> (scanned, found)
        self._exchanges: dict[int, AbstractExchange] = {}
        self._directory = Directory(
            directory_queue(exchange), work_queue_arguments(exchange, "directory", queue_type)
        )
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"AmqpTransport({self.url!r}, exchange={self.exchange!r})"

    __str__ = __repr__

    # -- lifecycle ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._started and not self._closed and self._connector.connected

    async def start(self) -> None:
        if self._closed:
            raise TransportClosed("the amqp transport is closed; open a new one")
        if not self._started:
            await self._connector.start()
            self._started = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        consumers = list(self._consumers | self._retired)
        for consumer in consumers:
            consumer.stop()
        for consumer in consumers:
            await consumer.close()
        ephemeral = [s for s in self._specs.values() if s.ephemeral]
        if ephemeral and self._connector.connected:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS, TransportError, TimeoutError):
                conn = await self._connector.connection(1.0)
                async with temporary_channel(conn) as channel:
                    for spec in ephemeral:
                        await channel.queue_delete(work_queue(self.exchange, spec.name))
        await self._connector.close()

    async def _conn(self) -> AbstractConnection:
        if not self._started:
            raise TransportError("the amqp transport is not started; await transport.start()")
        return await self._connector.connection(self.confirm_timeout)

    async def _replay(self, conn: AbstractConnection) -> None:
        """Declare the exchanges, the recorded queues and restart consumers."""
        self._waits.clear()
        self._exchanges.clear()
        async with temporary_channel(conn) as channel:
            await channel.declare_exchange(self.exchange, ExchangeType.TOPIC, durable=True)
            await channel.declare_exchange(
                dlx_exchange(self.exchange), ExchangeType.DIRECT, durable=True
            )
            await self._directory.ensure(channel)
            for spec in self._specs.values():
                await self._declare_on(channel, spec, ())
        for consumer in list(self._consumers):
            try:
                await self._attach(conn, consumer)
            except ChannelNotFoundEntity:
                log.error("queue %s vanished; its consumer stops", consumer.queue_name)
                consumer.stop()

    @staticmethod
    async def _attach(conn: AbstractConnection, consumer: Consumer) -> None:
        """Start ``consumer`` on a new channel (consuming a missing queue closes it)."""
        async with gate(conn):
            await consumer.attach(await conn.channel(publisher_confirms=False))

    # -- topology ----------------------------------------------------------

    async def _declare_on(
        self, channel: AbstractChannel, spec: QueueSpec, stale: Sequence[str]
    ) -> None:
        name = work_queue(self.exchange, spec.name)
        if spec.ephemeral and spec.lossless:
            queue = await channel.declare_queue(
                name, durable=True, arguments=lossless_queue_arguments(self.queue_type)
            )
        elif spec.ephemeral:
            queue = await channel.declare_queue(
                name, durable=False, auto_delete=True, arguments=EPHEMERAL_QUEUE_ARGUMENTS
            )
        else:
            queue = await channel.declare_queue(
                name,
                durable=True,
                arguments=work_queue_arguments(self.exchange, spec.name, self.queue_type),
            )
            dead = await channel.declare_queue(
                dead_queue(self.exchange, spec.name),
                durable=True,
                arguments={"x-queue-type": self.queue_type},
            )
            await dead.bind(dlx_exchange(self.exchange), routing_key=spec.name)
        for pattern in spec.patterns:
            await queue.bind(self.exchange, routing_key=pattern)
        for pattern in set(stale) - set(spec.patterns):
            await queue.unbind(self.exchange, routing_key=pattern)

    async def declare(self, queue: QueueSpec) -> None:
        conn = await self._conn()
        try:
            previous = (
                None if queue.ephemeral else (await self._directory.specs(conn)).get(queue.name)
            )
            async with temporary_channel(conn) as channel, gate(conn):
                await self._declare_on(channel, queue, previous.patterns if previous else ())
            # Listed only once bound: whoever waits for a service's queue in `queues()`
            # (`stalwart up --demo` before it feeds) may publish at once.
            if not queue.ephemeral:
                await self._directory.record(conn, queue)
        except ChannelPreconditionFailed as exc:
            raise ConfigError(
                f"queue {work_queue(self.exchange, queue.name)} exists with other arguments "
                f"({exc}); delete it or set bus.queue_type to match it"
            ) from None
        except CONNECTION_EXCEPTIONS as exc:
            raise BrokerUnavailable(f"declaring {queue.name} on {self.url} failed: {exc}") from None
        self._specs[queue.name] = queue

    async def _ensure_wait(self, channel: AbstractChannel, spec: QueueSpec, delay_ms: int) -> str:
        name = wait_queue(self.exchange, spec.name, delay_ms)
        if name not in self._waits:
            await channel.declare_queue(
                name,
                durable=True,
                arguments=wait_queue_arguments(self.exchange, spec.name, delay_ms, self.queue_type),
            )
            self._waits.add(name)
        return name

    # -- publishing --------------------------------------------------------

    async def _exchange_on(self, channel: AbstractChannel, name: str) -> AbstractExchange:
        key = hash((id(channel), name))
        exchange = self._exchanges.get(key)
        if exchange is None:
            exchange = await channel.get_exchange(name, ensure=False)
            self._exchanges[key] = exchange
        return exchange

    async def _confirmed(self, channel: AbstractChannel, sends: list[Any]) -> None:
        """Await every publish of a batch; translate the first failure."""
        # Every publish carries its own confirm timeout, so the gather is bounded.
        results = await asyncio.gather(*sends, return_exceptions=True)
        for result in results:
            if isinstance(result, ChannelAccessRefused):
                raise PublishRefused(
                    f"RabbitMQ refused the publish ({result}); publish as a user whose "
                    "(topic) permissions allow it"
                ) from None
            if isinstance(result, DeliveryError):
                # A channel that first published while its queue's leader moved can go on
                # nacking everything (seen on RabbitMQ 3.10, while new channels are acked):
                # the next publish opens a fresh one.
                with contextlib.suppress(*CONNECTION_EXCEPTIONS, RuntimeError):
                    await channel.close()
                raise PublishRefused(
                    f"RabbitMQ refused a message ({result}); check the broker's limits and logs"
                ) from None
            if isinstance(result, TimeoutError):
                raise BrokerUnavailable(
                    f"RabbitMQ at {self.url} did not confirm within {self.confirm_timeout:.1f}s "
                    "(down, blocked by a resource alarm, or overloaded)"
                ) from None
            if isinstance(result, BaseException):
                raise BrokerUnavailable(f"publishing to {self.url} failed: {result}") from None

    async def publish(self, batch: Sequence[Envelope], *, sync: bool = True) -> None:
        if self._closed:
            raise TransportClosed("the amqp transport is closed; open a new one")
        await self._send([(to_message(e, self.max_message_size), e.topic) for e in batch])

    async def publish_encoded(self, batch: Sequence[EncodedMessage]) -> None:
        await (await self.send_encoded(batch))

    async def send_encoded(self, batch: Sequence[EncodedMessage]) -> Awaitable[None]:
        """Publish ``batch`` without waiting for the confirms; await the result for them
        (see :class:`~stalwart.bus._transport.Pipelined`)."""
        if self._closed:
            raise TransportClosed("the amqp transport is closed; open a new one")
        return await self._dispatch(
            [(encoded_message(r, self.max_message_size), r.topic) for r in batch]
        )

    async def _send(self, messages: list[tuple[Outgoing, str]]) -> None:
        """Publish ``(message, routing key)`` pairs and wait for every confirm."""
        await (await self._dispatch(messages))

    async def _dispatch(self, messages: list[tuple[Outgoing, str]]) -> Awaitable[None]:
        """Start publishing ``(message, routing key)`` pairs, in order; the result waits
        for every confirm. The publishes are tasks, started in the order made, and the
        channel takes them in the order they start (as within one batch). They go to
        aiormq's channel under aio-pika's, as aio-pika's ``Exchange.publish`` does."""
        if not messages:
            return _nothing()
        await self._conn()
        channel = await self._connector.publish_channel(self.confirm_timeout)
        try:
            # aiormq's Channel: its basic_publish takes ``wait``, which the abstract one omits.
            underlay = cast(aiormq.Channel, await channel.get_underlay_channel())
        except CONNECTION_EXCEPTIONS as exc:
            raise BrokerUnavailable(f"publishing to {self.url} failed: {exc}") from None
        sends = [
            asyncio.ensure_future(
                underlay.basic_publish(
                    body,
                    exchange=self.exchange,
                    routing_key=topic,
                    properties=properties,
                    mandatory=False,
                    timeout=self.confirm_timeout,
                    # Await the confirm only: waiting for each frame to reach the socket
                    # holds the channel's lock, one publish at a time, per message.
                    wait=False,
                )
            )
            for (body, properties), topic in messages
        ]
        return self._confirmed(channel, sends)

    async def _settle_copy(
        self, delivery: AmqpDelivery, delay: float | None, reason: str, attempt: int
    ) -> None:
        """Publish (confirmed) the retry or dead-letter copy of ``delivery``."""
        spec = delivery.spec
        channel = await self._connector.publish_channel(self.confirm_timeout)
        if delay is None:
            if spec.ephemeral:
                log.warning("dropping dead message on ephemeral queue %s: %s", spec.name, reason)
                return
            headers: dict[str, Any] = {
                REASON_HEADER: reason[:1000],
                QUEUE_HEADER: spec.name,
                DIED_AT_HEADER: utcnow().isoformat(),
                ATTEMPT_HEADER: attempt,
                DEAD_KEY_HEADER: new_id(),
            }
            copy = copy_message(delivery.message, headers, expires_at=None)
            exchange = await self._exchange_on(channel, dlx_exchange(self.exchange))
            send = exchange.publish(copy, routing_key=spec.name, timeout=self.confirm_timeout)
        else:
            expires = delivery.envelope.expires_at if delivery.envelope else None
            copy = copy_message(
                delivery.message, {ATTEMPT_HEADER: attempt, ERROR_HEADER: reason[:1000]}, expires
            )
            delay_ms = quantise_delay(delay)
            target = work_queue(self.exchange, spec.name)
            if delay_ms > 0:
                try:
                    target = await self._ensure_wait(channel, spec, delay_ms)
                except CONNECTION_EXCEPTIONS as exc:
                    raise BrokerUnavailable(f"declaring a retry queue failed: {exc}") from None
            send = channel.default_exchange.publish(
                copy, routing_key=target, timeout=self.confirm_timeout
            )
        await self._confirmed(channel, [send])

    # -- consuming ---------------------------------------------------------

    def consume(self, queue: str, prefetch: int) -> AsyncIterator[Delivery]:
        return self._consume(queue, prefetch)

    async def _consume(self, queue: str, prefetch: int) -> AsyncIterator[Delivery]:
        if self._closed:
            raise TransportClosed("the amqp transport is closed; open a new one")
        conn = await self._conn()
        spec = self._specs.get(queue)
        if spec is None:
            spec = (await self._directory.specs(conn)).get(queue) or QueueSpec(queue, ())
        self._retired = {c for c in self._retired if not c.finished}
        consumer = Consumer(spec, work_queue(self.exchange, queue), prefetch, self._settle_copy)
        try:
            await self._attach(conn, consumer)
        except ChannelNotFoundEntity:
            raise TransportError(
                f"queue {queue!r} is not declared on {self.url}; declare it first "
                "(a service declares its queue when it starts)"
            ) from None
        self._consumers.add(consumer)
        try:
            while True:
                item = await consumer.inbox.get()
                if item is None:
                    return
                if item.stale:
                    continue
                item.hand_out()
                yield item
        finally:
            self._consumers.discard(consumer)
            if not self._closed:
                self._retired.add(consumer)
                await consumer.retire()

    # -- management --------------------------------------------------------

    @staticmethod
    async def _count(
        conn: AbstractConnection, channel: AbstractChannel, name: str
    ) -> tuple[AbstractChannel, int | None]:
        """Message count of ``name`` (None if absent: that closes the channel, so a new one)."""
        try:
            queue = await find_queue(conn, channel, name)
        except ChannelNotFoundEntity:
            return await open_channel(conn, confirms=False), None
        return channel, int(queue.declaration_result.message_count or 0)

    async def queue_stats(self, queue: str) -> QueueStats:
        conn = await self._conn()
        channel = await open_channel(conn, confirms=False)
        try:
            try:
                declared = await find_queue(conn, channel, work_queue(self.exchange, queue))
            except ChannelNotFoundEntity:
                raise TransportError(
                    f"queue {queue!r} does not exist on {self.url}; check the service name "
                    "(see `stalwart dlq list`) or start the service so that it declares it"
                ) from None
            ready = int(declared.declaration_result.message_count or 0)
            channel, dead = await self._count(conn, channel, dead_queue(self.exchange, queue))
            delayed = 0
            now = time.monotonic()
            seen = self._wait_seen.get(queue)
            rescan = seen is None or now - seen[0] > _WAIT_RESCAN
            existing: list[str] = []
            for name in self._wait_names(queue, None if rescan or seen is None else seen[1]):
                channel, count = await self._count(conn, channel, name)
                if count is not None:
                    existing.append(name)
                    delayed += count
            if rescan:
                self._wait_seen[queue] = (now, existing)
        except CONNECTION_EXCEPTIONS as exc:
            raise BrokerUnavailable(f"reading stats of {queue} failed: {exc}") from None
        finally:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await channel.close()
        inflight = sum(c.inflight for c in self._consumers if c.spec.name == queue)
        return QueueStats(
            name=queue, ready=ready, inflight=inflight, delayed=delayed, dead=dead or 0
        )

    def _wait_names(self, queue: str, known: list[str] | None) -> list[str]:
        """Wait queues to count for ``queue``: those found by the last scan (``known``),
        or else every one its backoff can use; plus those made by this process."""
        spec = self._specs.get(queue) or QueueSpec(queue, ())
        names = (
            set(known)
            if known is not None
            else {
                wait_queue(self.exchange, queue, ms)
                for ms in ladder_between(spec.retry_initial / 2, spec.retry_max)
            }
        )
        prefix = wait_queue(self.exchange, queue, 0)[:-1]
        names.update(name for name in self._waits if name.startswith(prefix))
        return sorted(names)

    async def queues(self) -> list[str]:
        try:
            return sorted(await self._directory.specs(await self._conn()))
        except CONNECTION_EXCEPTIONS as exc:
            raise BrokerUnavailable(f"reading the queue directory failed: {exc}") from None

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return await self._admin(_admin.browse_dead, queue, limit)

    async def requeue_dead(self, queue: str, keys: Sequence[str] | None = None) -> int:
        return await self._admin(_admin.requeue_dead, queue, keys)

    async def purge_dead(self, queue: str, keys: Sequence[str] | None = None) -> int:
        return await self._admin(_admin.purge_dead, queue, keys)

    async def _admin(
        self,
        operation: Callable[[AbstractConnection, str, str, _A], Awaitable[_T]],
        queue: str,
        arg: _A,
    ) -> _T:
        conn = await self._conn()
        try:
            return await operation(conn, self.exchange, queue, arg)
        except ChannelNotFoundEntity:
            raise TransportError(
                f"no dead-letter queue for {queue!r} on {self.url}; check the service name "
                "(see `stalwart dlq list`)"
            ) from None
        except CONNECTION_EXCEPTIONS as exc:
            raise BrokerUnavailable(f"dead-letter operation on {queue} failed: {exc}") from None


async def _nothing() -> None:
    """The confirms of an empty batch."""
