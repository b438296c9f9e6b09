"""The :class:`NatsTransport`: the transport contract on NATS JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import MaxPayloadError
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, BadRequestError, NotFoundError

from stalwart.bus._transport import (
    DeadLetter,
    Delivery,
    EncodedMessage,
    QueueSpec,
    QueueStats,
    within_limit,
)
from stalwart.bus.nats._admin import Admin
from stalwart.bus.nats._consumer import NatsDelivery, Puller
from stalwart.bus.nats._names import (
    ATTEMPT_HEADER,
    DIED_AT_HEADER,
    MSG_ID_HEADER,
    QUEUE_HEADER,
    REASON_HEADER,
    TOPIC_HEADER,
    consumer_name,
    dead_stream,
    dead_subject,
    direct_subject,
    filters_of,
    spec_to_description,
    topic_subject,
    work_stream,
)
from stalwart.envelope import DEFAULT_MAX_SIZE, Envelope, encode, utcnow
from stalwart.errors import (
    BrokerUnavailable,
    ConfigError,
    PublishRefused,
    TransportClosed,
    TransportError,
)
from stalwart.redact import redact_url

__all__ = ["NatsTransport", "split_servers"]

log = logging.getLogger("stalwart.bus.nats")

_T = TypeVar("_T")
_EPHEMERAL_IDLE = 60.0  # seconds after which the server deletes an abandoned ephemeral consumer
_DUPLICATE_WINDOW = 120.0  # seconds in which a repeated envelope id is stored once
_UNAVAILABLE = (NatsError, OSError, asyncio.TimeoutError)

Row = tuple[str, bytes, dict[str, str]]  # subject, data, headers


def split_servers(url: str) -> tuple[list[str], dict[str, list[str]]]:
    """``nats://h1:4222,nats://h2:4222?replicas=3`` -> the servers and the options."""
    text, _, query = url.partition("?")
    servers = [part.strip() for part in text.split(",") if part.strip()]
    servers = [s if "://" in s else f"nats://{s}" for s in servers]
    return servers, parse_qs(query)


class NatsTransport:
    """A :class:`~stalwart.bus.Transport` on NATS JetStream.

    ``url`` may list several servers (``nats://h1:4222,nats://h2:4222``);
    ``exchange`` names the namespace (subject prefix and stream names);
    ``replicas`` (or ``?replicas=3`` on the URL) is the streams' replication
    factor: 3 on a cluster, so that a publish is acknowledged only once a
    majority of nodes stored it. Unknown options are ignored, so that one
    settings table fits every backend.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "stalwart",
        max_message_size: int = DEFAULT_MAX_SIZE,
        replicas: int | None = None,
        publish_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        **ignored: Any,
    ) -> None:
        self._servers, query = split_servers(url)
        if not self._servers:
            raise ConfigError(f"no NATS server in {redact_url(url)!r}: use nats://host:4222")
        try:
            self.replicas = int(replicas or query.get("replicas", ["1"])[0])
        except ValueError:
            raise ConfigError(f"replicas in {redact_url(url)!r} is not a number") from None
        if not 1 <= self.replicas <= 5:
            raise ConfigError(f"replicas={self.replicas}: JetStream takes 1 to 5 (3 on a cluster)")
        self.url = redact_url(url)
        self.namespace = exchange
        self.max_message_size = max_message_size
        self.publish_timeout = publish_timeout
        self.connect_timeout = connect_timeout
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._admin: Admin | None = None
        self._specs: dict[str, QueueSpec] = {}
        self._pullers: set[Puller] = set()
        self._retired: set[Puller] = set()
        self._delayed: dict[str, dict[int, float]] = {}  # per queue: see Puller.delays
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"NatsTransport({self.url!r}, exchange={self.namespace!r})"

    __str__ = __repr__

    # -- lifecycle ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._started and not self._closed and bool(self._nc and self._nc.is_connected)

    async def start(self) -> None:
        if self._closed:
            raise TransportClosed("the nats transport is closed; open a new one")
        if self._started:
            return
        nc = Client()
        try:
            # Reconnects go on forever; the first connect is bounded, to fail fast.
            await asyncio.wait_for(
                nc.connect(
                    servers=self._servers,
                    connect_timeout=max(1, int(self.connect_timeout)),
                    reconnect_time_wait=1,
                    max_reconnect_attempts=-1,
                    error_cb=self._on_error,
                    reconnected_cb=self._on_reconnected,
                    name="stalwart",
                ),
                self.connect_timeout * len(self._servers) + 1.0,
            )
        except _UNAVAILABLE as exc:
            with contextlib.suppress(*_UNAVAILABLE):
                await nc.close()
            raise BrokerUnavailable(
                f"cannot reach NATS at {self.url} ({type(exc).__name__}: {exc}); start "
                "nats-server with JetStream (-js) or check bus.url"
            ) from None
        self._nc = nc
        self._js = self._nc.jetstream(timeout=self.publish_timeout)
        self._admin = Admin(self._js, self.namespace, self.url)
        self._started = True
        try:
            await self._ensure_streams()
        except BaseException:
            await self.close()
            raise

    async def _on_error(self, exc: Exception) -> None:
        log.info("nats connection to %s: %s", self.url, exc)

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS at %s", self.url)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for puller in list(self._pullers | self._retired):
            await puller.close()
        nc, self._nc = self._nc, None
        if nc is None:
            return
        ephemeral = [s for s in self._specs.values() if s.ephemeral]
        if ephemeral and nc.is_connected and self._js is not None and self._admin is not None:
            with contextlib.suppress(*_UNAVAILABLE, APIError):
                for spec in ephemeral:
                    await self._drop_consumers(self._js, self._admin, spec.name, keep=())
        try:
            await asyncio.wait_for(nc.close(), 5.0)
        except _UNAVAILABLE:
            pass
        except asyncio.CancelledError:
            # nats-py lets a socket that the peer already dropped raise this on close
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise

    def _need(self) -> JetStreamContext:
        if self._closed:
            raise TransportClosed("the nats transport is closed; open a new one")
        if self._js is None:
            raise TransportError("the nats transport is not started; await transport.start()")
        return self._js

    async def _call(self, what: str, action: Awaitable[_T]) -> _T:
        """Run a JetStream request; connection trouble is BrokerUnavailable."""
        try:
            return await action
        except (NotFoundError, BadRequestError):
            raise
        except APIError as exc:
            raise TransportError(f"{what} on {self.url} was refused: {exc}") from None
        except _UNAVAILABLE as exc:
            raise BrokerUnavailable(
                f"{what} on {self.url} failed ({type(exc).__name__}: {exc})"
            ) from None

    # -- topology ----------------------------------------------------------

    async def _ensure_streams(self) -> None:
        js = self._need()
        ns = self.namespace
        configs = [
            StreamConfig(
                name=work_stream(ns),
                subjects=[f"{ns}.>", f"{ns}-to.>"],
                retention=RetentionPolicy.INTEREST,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=_DUPLICATE_WINDOW,
            ),
            StreamConfig(
                name=dead_stream(ns),
                subjects=[f"{ns}-dead.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
            ),
        ]
        for config in configs:
            try:
                await self._call("creating a stream", js.add_stream(config))
            except BadRequestError as exc:
                raise ConfigError(
                    f"stream {config.name} exists on {self.url} with other settings ({exc}); "
                    "delete it (nats stream rm) or use another bus.exchange"
                ) from None
            except TransportError as exc:
                if self.replicas == 1:
                    raise
                raise ConfigError(
                    f"{exc}; replicas={self.replicas} needs a JetStream cluster of at least "
                    f"{self.replicas} nodes: use replicas=1 on a single server"
                ) from None

    async def declare(self, queue: QueueSpec) -> None:
        js = self._need()
        description = spec_to_description(queue)
        names: list[str] = []
        for found in filters_of(self.namespace, queue):
            name = consumer_name(queue.name, found.subject)
            names.append(name)
            config = ConsumerConfig(
                durable_name=name,
                description=description,
                deliver_policy=DeliverPolicy.NEW,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=queue.lease,
                max_deliver=-1,
                filter_subject=found.subject,
                max_ack_pending=20_000,
                inactive_threshold=_EPHEMERAL_IDLE if queue.ephemeral else None,
                num_replicas=self.replicas,
            )
            try:
                await self._call(
                    f"declaring {queue.name}",
                    js.add_consumer(work_stream(self.namespace), config=config),
                )
            except BadRequestError as exc:
                raise ConfigError(
                    f"consumer {name} of {queue.name} cannot be created or updated ({exc}); "
                    "delete it (nats consumer rm) and start the service again"
                ) from None
        await self._call(
            "dropping stale consumers",
            self._drop_consumers(js, self._need_admin(), queue.name, names),
        )
        self._specs[queue.name] = queue

    async def _drop_consumers(
        self, js: JetStreamContext, admin: Admin, service: str, keep: Sequence[str]
    ) -> None:
        for info, spec in await admin.consumers():
            if spec.name == service and info.name not in keep:
                with contextlib.suppress(NotFoundError):
                    await js.delete_consumer(work_stream(self.namespace), info.name)

    def _need_admin(self) -> Admin:
        self._need()
        assert self._admin is not None
        return self._admin

    # -- publishing --------------------------------------------------------

    async def publish(self, batch: Sequence[Envelope], *, sync: bool = True) -> None:
        self._need()
        rows = [self._row(env.topic, encode(env, self.max_message_size), env) for env in batch]
        await (await self._send(rows))

    async def publish_encoded(self, batch: Sequence[EncodedMessage]) -> None:
        await (await self.send_encoded(batch))

    async def send_encoded(self, batch: Sequence[EncodedMessage]) -> Awaitable[None]:
        """Publish ``batch`` without waiting for JetStream's acks; await the result for
        them (see :class:`~stalwart.bus._transport.Pipelined`)."""
        self._need()
        limit = self.max_message_size
        return await self._send(
            [
                (
                    topic_subject(self.namespace, row.topic),
                    within_limit(row.data, limit),
                    {MSG_ID_HEADER: row.id},
                )
                for row in batch
            ]
        )

    def _row(self, topic: str, data: bytes, envelope: Envelope) -> Row:
        headers = {MSG_ID_HEADER: envelope.id}
        if envelope.attempt > 1:
            headers[ATTEMPT_HEADER] = str(envelope.attempt)
        return topic_subject(self.namespace, topic), data, headers

    async def _send(self, rows: Sequence[Row]) -> Awaitable[None]:
        """Publish every row, in order; the result waits for all of JetStream's acks.
        ``publish_timeout`` bounds both steps together."""
        js = self._need()
        deadline = asyncio.get_running_loop().time() + self.publish_timeout
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout_at(deadline):
                for subject, data, headers in rows:
                    futures.append(await js.publish_async(subject, data, headers=headers))
        except BaseException as exc:
            for future in futures:
                future.cancel()
            if isinstance(exc, MaxPayloadError):
                raise PublishRefused(
                    f"a message is over the NATS server's max_payload at {self.url}; raise "
                    "max_payload on the servers or lower bus.max_message_size"
                ) from None
            if isinstance(exc, TimeoutError):
                raise self._no_ack() from None
            if isinstance(exc, _UNAVAILABLE):
                raise BrokerUnavailable(f"publishing to {self.url} failed: {exc}") from None
            raise
        return self._acked(futures, deadline)

    async def _acked(self, futures: list[asyncio.Future[Any]], deadline: float) -> None:
        """Wait for the acks of one :meth:`_send`; translate the first failure."""
        if not futures:
            return
        try:
            async with asyncio.timeout_at(deadline):
                results = await asyncio.gather(*futures, return_exceptions=True)
        except TimeoutError:
            for future in futures:
                future.cancel()
            raise self._no_ack() from None
        for result in results:
            if isinstance(result, APIError):
                raise PublishRefused(
                    f"JetStream refused a message ({result}); check the stream's limits"
                ) from None
            if isinstance(result, BaseException):
                raise BrokerUnavailable(f"publishing to {self.url} failed: {result}") from None

    def _no_ack(self) -> BrokerUnavailable:
        return BrokerUnavailable(
            f"NATS at {self.url} did not acknowledge within {self.publish_timeout:.1f}s "
            "(down, no JetStream quorum, or overloaded)"
        )

    async def _copy(self, delivery: NatsDelivery, dead: bool, reason: str, attempt: int) -> None:
        """Publish the dead-letter copy, or the copy back on the direct subject."""
        spec = delivery.spec
        headers = {
            k: v for k, v in (delivery.msg.headers or {}).items() if not k.startswith("Nats-")
        }
        headers[ATTEMPT_HEADER] = str(attempt)
        headers[TOPIC_HEADER] = delivery.topic
        if not dead:
            subject = direct_subject(self.namespace, spec.name)
        elif spec.ephemeral:
            log.warning("dropping dead message on ephemeral queue %s: %s", spec.name, reason)
            return
        else:
            subject = dead_subject(self.namespace, spec.name)
            headers[REASON_HEADER] = reason[:1000]
            headers[QUEUE_HEADER] = spec.name
            headers[DIED_AT_HEADER] = utcnow().isoformat()
        await (await self._send([(subject, delivery.raw, headers)]))

    # -- consuming ---------------------------------------------------------

    def consume(self, queue: str, prefetch: int) -> AsyncIterator[Delivery]:
        return self._consume(queue, prefetch)

    async def _consume(self, queue: str, prefetch: int) -> AsyncIterator[Delivery]:
        self._need()
        assert self._nc is not None
        spec, consumers = await self._consumers_of(queue)
        puller = Puller(
            self._nc,
            namespace=self.namespace,
            stream=work_stream(self.namespace),
            spec=spec,
            consumers=consumers,
            prefetch=prefetch,
            copier=self._copy,
            delays=self._delayed.setdefault(queue, {}),
        )
        await puller.start()
        self._retired = {p for p in self._retired if not p.finished}
        self._pullers.add(puller)
        try:
            while True:
                item = await puller.inbox.get()
                if item is None:
                    return
                if item.settled:
                    continue
                puller.take(item)
                yield item
        finally:
            self._pullers.discard(puller)
            if not self._closed:
                self._retired.add(puller)
                await puller.retire()

    async def _consumers_of(self, queue: str) -> tuple[QueueSpec, list[tuple[str, Any]]]:
        """The queue's settings and its consumers with their filters, in delivery order."""
        spec = self._specs.get(queue)
        if spec is None:
            admin = self._need_admin()
            infos = await self._call("reading the directory", admin.consumers())
            known = [s for _, s in infos if s.name == queue]
            if not known:
                raise TransportError(
                    f"queue {queue!r} is not declared on {self.url}; declare it first "
                    "(a service declares its queue when it starts)"
                )
            spec = known[0]
        filters = filters_of(self.namespace, spec)
        return spec, [(consumer_name(spec.name, f.subject), f) for f in filters]

    # -- management --------------------------------------------------------

    async def queue_stats(self, queue: str) -> QueueStats:
        admin = self._need_admin()
        delays = self._delayed.get(queue, {})
        now = asyncio.get_running_loop().time()
        for seq in [seq for seq, due in delays.items() if due <= now]:
            del delays[seq]
        return await self._call(f"reading stats of {queue}", admin.stats(queue, len(delays)))

    async def queues(self) -> list[str]:
        return await self._call("reading the directory", self._need_admin().queues())

    async def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return await self._dead_op(lambda a: a.dead_letters(queue, limit), queue)

    async def requeue_dead(self, queue: str, keys: Sequence[str] | None = None) -> int:
        return await self._dead_op(lambda a: a.requeue(queue, keys), queue)

    async def purge_dead(self, queue: str, keys: Sequence[str] | None = None) -> int:
        return await self._dead_op(lambda a: a.purge(queue, keys), queue)

    async def _dead_op(self, operation: Callable[[Admin], Awaitable[_T]], queue: str) -> _T:
        return await self._call(f"dead-letter operation on {queue}", operation(self._need_admin()))
