"""Support for tests on real RabbitMQ: private exchanges, their cleanup, and reading
bodies back (the broker's outages come from :mod:`tcp_proxy`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aio_pika

from stalwart.bus import Transport
from stalwart.bus.amqp import AmqpTransport
from stalwart.bus.amqp._names import (
    dead_queue,
    directory_queue,
    dlx_exchange,
    ladder,
    wait_queue,
    work_queue,
)

__all__ = ["bodies", "drop_exchange", "private_exchange"]


async def bodies(bus: Transport, queue: str, count: int, timeout: float = 10.0) -> list[Any]:
    """The bodies of the next ``count`` deliveries of ``queue``, acked, in arrival order."""
    got: list[Any] = []
    iterator = bus.consume(queue, 100)
    try:
        async with asyncio.timeout(timeout):
            async for delivery in iterator:
                assert delivery.envelope is not None
                got.append(delivery.envelope.body)
                await delivery.ack()
                if len(got) == count:
                    break
    finally:
        await iterator.aclose()  # type: ignore[attr-defined]
    return got


@contextlib.asynccontextmanager
async def private_exchange(
    url: str, prefix: str, unique: str, extra: tuple[str, ...] = ()
) -> AsyncIterator[str]:
    """A fresh exchange name for one test; everything under it is deleted afterwards."""
    name = f"test-{prefix}-{unique}"
    try:
        yield name
    finally:
        await drop_exchange(url, name, extra)


async def drop_exchange(url: str, exchange: str, extra: tuple[str, ...] = ()) -> None:
    """Delete every queue and exchange a test made under ``exchange`` (quorum queues are
    Raft groups: leaving them behind slows the broker for everyone)."""
    bus = AmqpTransport(url, exchange=exchange)
    await bus.start()
    try:
        services = set(await bus.queues()) | set(extra)
    finally:
        await bus.close()
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for service in services:
            names = [work_queue(exchange, service), dead_queue(exchange, service)]
            names += [wait_queue(exchange, service, ms) for ms in ladder()]
            for name in names:
                await channel.queue_delete(name)
        await channel.queue_delete(directory_queue(exchange))
        await channel.exchange_delete(exchange)
        await channel.exchange_delete(dlx_exchange(exchange))
    finally:
        await connection.close()
