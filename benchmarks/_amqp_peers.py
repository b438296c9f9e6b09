"""The contenders of ``bench_amqp``: stalwart's amqp transport, raw aio-pika and
FastStream's RabbitBroker, each with the same durability (quorum queue,
persistent messages, publisher confirms) and the same bytes on the wire.

Each contender exposes ``setup()``, ``publish(n, batch)``, ``consume(n)``,
``round_trips(k)`` (publish-to-arrival times at a running consumer) and
``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)

from benchmarks._amqp_queue import SERVICE, TOPIC, drop
from stalwart.bus import QueueSpec
from stalwart.bus.amqp import AmqpTransport
from stalwart.bus.amqp._names import dlx_exchange, work_queue, work_queue_arguments
from stalwart.envelope import Envelope, encode

__all__ = ["SERVICE", "TOPIC", "FastStreamPeer", "RawPeer", "StalwartPeer", "drop", "payload"]

PREFETCH = 256


def payload() -> str:
    """A 1 KiB body."""
    return "x" * 1024


async def _timed_trips(
    trips: int,
    listen: Callable[[], Awaitable[None]],
    send: Callable[[], Awaitable[object]],
    arrived: asyncio.Event,
) -> list[float]:
    """Milliseconds from publish to arrival at an already running consumer."""
    listener = asyncio.create_task(listen())
    try:
        await asyncio.sleep(0.5)  # let the consumer attach before the clock starts
        times = []
        for _ in range(trips):
            arrived.clear()
            started = time.perf_counter()
            await send()
            await asyncio.wait_for(arrived.wait(), 30.0)
            times.append((time.perf_counter() - started) * 1000)
        return times
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


class StalwartPeer:
    name = "stalwart"

    def __init__(self, url: str, exchange: str) -> None:
        self.url, self.exchange = url, exchange
        self.bus = AmqpTransport(url, exchange=exchange)

    async def setup(self) -> None:
        await self.bus.start()
        await self.bus.declare(QueueSpec(SERVICE, (TOPIC,)))

    async def publish(self, n: int, batch: int) -> None:
        body = payload()
        for start in range(0, n, batch):
            count = min(batch, n - start)
            await self.bus.publish([Envelope.new(TOPIC, body) for _ in range(count)])

    async def consume(self, n: int) -> None:
        seen = 0
        iterator = self.bus.consume(SERVICE, PREFETCH)
        async for delivery in iterator:
            await delivery.ack()
            seen += 1
            if seen == n:
                break
        await iterator.aclose()  # type: ignore[attr-defined]

    async def round_trips(self, trips: int) -> list[float]:
        arrived = asyncio.Event()

        async def listen() -> None:
            async for delivery in self.bus.consume(SERVICE, PREFETCH):
                arrived.set()
                await delivery.ack()

        return await _timed_trips(
            trips, listen, lambda: self.bus.publish([Envelope.new(TOPIC, payload())]), arrived
        )

    async def close(self) -> None:
        await self.bus.close()
        await drop(self.url, self.exchange)


class RawPeer:
    """aio-pika as its documentation shows it, with the same queue arguments."""

    name = "aio-pika"

    def __init__(self, url: str, exchange: str) -> None:
        self.url, self.exchange = url, exchange
        self.body = encode(Envelope.new(TOPIC, payload()))  # the same bytes stalwart sends

    async def setup(self) -> None:
        self.connection = await aio_pika.connect(self.url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        await self.channel.set_qos(prefetch_count=PREFETCH)
        self.topic = await self.channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await self.channel.declare_exchange(
            dlx_exchange(self.exchange), aio_pika.ExchangeType.DIRECT, durable=True
        )
        self.queue = await self.channel.declare_queue(
            work_queue(self.exchange, SERVICE),
            durable=True,
            arguments=work_queue_arguments(self.exchange, SERVICE, "quorum"),
        )
        await self.queue.bind(self.topic, routing_key=TOPIC)

    def _message(self) -> aio_pika.Message:
        return aio_pika.Message(
            self.body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )

    async def publish(self, n: int, batch: int) -> None:
        for start in range(0, n, batch):
            count = min(batch, n - start)
            await asyncio.gather(
                *(self.topic.publish(self._message(), routing_key=TOPIC) for _ in range(count))
            )

    async def consume(self, n: int) -> None:
        seen = 0
        async with self.queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                seen += 1
                if seen == n:
                    break

    async def round_trips(self, trips: int) -> list[float]:
        arrived = asyncio.Event()

        async def listen() -> None:
            async with self.queue.iterator() as messages:
                async for message in messages:
                    arrived.set()
                    await message.ack()

        async def send() -> None:
            await self.topic.publish(self._message(), routing_key=TOPIC)

        return await _timed_trips(trips, listen, send, arrived)

    async def close(self) -> None:
        await self.connection.close()
        await drop(self.url, self.exchange)


class FastStreamPeer:
    """FastStream's RabbitBroker: persistent publishes (it confirms by default)."""

    name = "faststream"

    def __init__(self, url: str, exchange: str) -> None:
        self.url, self.exchange_name = url, exchange
        self.body = encode(Envelope.new(TOPIC, payload()))
        self.queue = RabbitQueue(
            work_queue(exchange, SERVICE),
            queue_type=QueueType.QUORUM,
            durable=True,
            arguments=work_queue_arguments(exchange, SERVICE, "quorum"),
            routing_key=TOPIC,
        )
        self.exchange = RabbitExchange(exchange, type=ExchangeType.TOPIC, durable=True)
        self._target = 0
        self._seen = 0
        self._done = asyncio.Event()

    async def setup(self) -> None:
        self.publisher = RabbitBroker(self.url, logger=None)
        await self.publisher.start()
        await self.publisher.declare_exchange(
            RabbitExchange(dlx_exchange(self.exchange_name), type=ExchangeType.DIRECT, durable=True)
        )
        exchange = await self.publisher.declare_exchange(self.exchange)
        queue = await self.publisher.declare_queue(self.queue)
        await queue.bind(exchange, routing_key=TOPIC)
        # The consuming side's connection is open before any timing, as for the others.
        self.consumer = RabbitBroker(self.url, logger=None)
        await self.consumer.connect()

    async def publish(self, n: int, batch: int) -> None:
        for start in range(0, n, batch):
            count = min(batch, n - start)
            await asyncio.gather(
                *(
                    self.publisher.publish(
                        self.body,
                        exchange=self.exchange,
                        routing_key=TOPIC,
                        persist=True,
                        content_type="application/json",
                    )
                    for _ in range(count)
                )
            )

    async def consume(self, n: int) -> None:
        self._target, self._seen = n, 0
        self._done.clear()

        async def handle(body: Any) -> None:
            self._seen += 1
            if self._seen >= self._target:
                self._done.set()

        subscriber = self._subscriber()
        subscriber(handle)
        await subscriber.start()
        try:
            await asyncio.wait_for(self._done.wait(), 60.0)
        finally:
            await subscriber.stop()

    def _subscriber(self) -> Any:
        """A subscriber on the consumer broker, connected in setup() as the others are,
        with their prefetch (its own channel, as stalwart's consumer has)."""
        return self.consumer.subscriber(
            self.queue, self.exchange, channel=Channel(prefetch_count=PREFETCH)
        )

    async def round_trips(self, trips: int) -> list[float]:
        arrived = asyncio.Event()

        async def handle(body: Any) -> None:
            arrived.set()

        subscriber = self._subscriber()
        subscriber(handle)

        async def listen() -> None:
            await subscriber.start()
            try:
                await asyncio.Event().wait()  # until cancelled
            finally:
                await subscriber.stop()

        async def send() -> None:
            await self.publisher.publish(
                self.body, exchange=self.exchange, routing_key=TOPIC, persist=True
            )

        return await _timed_trips(trips, listen, send, arrived)

    async def close(self) -> None:
        for broker in (self.consumer, self.publisher):
            with contextlib.suppress(Exception):
                await broker.stop()
        await drop(self.url, self.exchange_name)


Peer = StalwartPeer | RawPeer | FastStreamPeer
