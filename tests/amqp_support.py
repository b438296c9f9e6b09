"""Support for tests on real RabbitMQ: a fault-injecting TCP proxy and cleanup.

Tests point a transport at the proxy instead of the broker; ``cut()``
simulates a network partition or a broker that went away (open connections
drop, new ones are refused until ``restore()``), without stopping the
broker that other tests share.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

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

__all__ = ["TcpProxy", "bodies", "drop_exchange", "private_exchange", "proxy_to"]


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


@contextlib.asynccontextmanager
async def proxy_to(url: str) -> AsyncIterator[TcpProxy]:
    """A started TcpProxy in front of the broker of ``url``."""
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


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


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.cut_now = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, base: str) -> str:
        """``base`` (an amqp URL to the real broker) rewritten to go through the proxy."""
        host_port = f"{self._target[0]}:{self._target[1]}"
        return base.replace(host_port, f"127.0.0.1:{self.port}")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_now:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self._target), 5.0
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            dst.close()
            self._writers.discard(dst)

    def cut(self) -> None:
        """Drop every open connection and refuse new ones."""
        self.cut_now = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.cut_now = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
