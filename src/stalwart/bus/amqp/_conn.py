"""One supervised AMQP connection that fails over between cluster nodes.

The first connect fails fast with :class:`BrokerUnavailable`; after that a
lost connection is re-established forever (backoff with jitter and a cap,
cycling through the node URLs) and ``on_connected`` replays the topology
and consumers before anyone is told the connection is ready again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from stalwart.backoff import Backoff
from stalwart.bus._factory import redact_url
from stalwart.bus._tasks import cancel_and_wait
from stalwart.bus.amqp._channels import open_channel
from stalwart.errors import BrokerUnavailable, TransportClosed

__all__ = ["Connector", "split_urls"]

log = logging.getLogger("stalwart.bus.amqp")

_BACKOFF_INITIAL = 0.1
_BACKOFF_CAP = 5.0
# Seconds between heartbeats unless the URL sets ?heartbeat=N. aiormq's default (60)
# notices a silent connection (a node cut off by a partition) only after 3 minutes;
# it gives up after three missed heartbeats.
_HEARTBEAT = 10


class _ClosedWhenConnectFails(aio_pika.Connection):
    """aio-pika's connection, closed at once when connecting fails.

    aio-pika leaves a connection that failed to connect open; its ``__del__``
    then schedules ``close()`` on whatever loop is current, and when the
    garbage collector runs while that loop is not running the close is never
    awaited (``RuntimeWarning: coroutine 'Connection.close' was never awaited``).
    """

    async def connect(self, timeout: float | None = None) -> None:
        try:
            await super().connect(timeout)
        except BaseException:
            await self.close()
            raise


def _cancelled() -> bool:
    """True when the current task has been asked to stop (keep that request alive)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def split_urls(url: str) -> list[str]:
    """``amqp://a/,amqp://b/`` -> one URL per cluster node."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise BrokerUnavailable("empty amqp URL: set bus.url to amqp://user:pass@host:5672/")
    return urls


class Connector:
    """Owns the connection, its reconnect task and the confirm-mode publish channel."""

    def __init__(
        self,
        urls: list[str],
        *,
        on_connected: Callable[[AbstractConnection], Awaitable[None]],
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._urls = urls
        self._on_connected = on_connected
        self._connect_timeout = connect_timeout
        self._ssl_context = ssl_context
        self._conn: AbstractConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._closed = False
        self._supervisor: asyncio.Task[None] | None = None
        self._node = 0
        self._channel_lock = asyncio.Lock()

    @property
    def display(self) -> str:
        return ",".join(redact_url(u) for u in self._urls)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    async def start(self) -> None:
        """Connect to the first reachable node, or raise BrokerUnavailable now."""
        errors: list[str] = []
        for index in range(len(self._urls)):
            try:
                await self._connect(index)
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
                if _cancelled():
                    raise asyncio.CancelledError from exc
                errors.append(f"{redact_url(self._urls[index])}: {exc or type(exc).__name__}")
                continue
            self._supervisor = asyncio.create_task(
                self._supervise(), name="stalwart-amqp-reconnect"
            )
            return
        raise BrokerUnavailable(
            f"cannot reach RabbitMQ ({'; '.join(errors)}); start the broker or fix bus.url"
        )

    async def _connect(self, index: int) -> None:
        url = self._urls[index]
        kwargs: dict[str, Any] = {"timeout": self._connect_timeout}
        if "heartbeat=" not in urlsplit(url).query:
            kwargs["heartbeat"] = _HEARTBEAT
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        conn = await asyncio.wait_for(
            aio_pika.connect(url, connection_class=_ClosedWhenConnectFails, **kwargs),
            timeout=self._connect_timeout + 1.0,
        )
        try:
            self._publish_channel = await open_channel(conn, confirms=True)
            self._conn = conn
            self._node = index
            await self._on_connected(conn)
        except BaseException:
            self._conn = None
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await conn.close()
            raise
        conn.close_callbacks.add(self._connection_lost)
        self._lost.clear()
        self._ready.set()
        log.info("connected to %s", redact_url(url))

    def _connection_lost(self, _sender: object, exc: BaseException | None = None) -> None:
        if self._closed:
            return
        log.warning("connection to %s lost: %s", redact_url(self._urls[self._node]), exc)
        self._ready.clear()
        self._lost.set()

    async def _supervise(self) -> None:
        while not self._closed:
            await self._lost.wait()
            backoff = Backoff(_BACKOFF_INITIAL, _BACKOFF_CAP)
            index = self._node
            while not self._closed and not self._ready.is_set():
                try:
                    await self._connect(index)
                except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
                    if _cancelled():
                        raise asyncio.CancelledError from exc
                    delay = backoff.next()
                    log.info(
                        "reconnect to %s failed (%s); retrying in %.2fs",
                        redact_url(self._urls[index]),
                        exc or type(exc).__name__,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    index = (index + 1) % len(self._urls)

    async def connection(self, timeout: float) -> AbstractConnection:
        """The live connection, waiting up to ``timeout`` for a reconnect."""
        if self._closed:
            raise TransportClosed("the amqp transport is closed; open a new one")
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                raise BrokerUnavailable(
                    f"RabbitMQ at {self.display} is unreachable for {timeout:.1f}s; "
                    "check the broker (messages are kept by the outbox if one is configured)"
                ) from None
        if self._conn is None:
            raise TransportClosed("the amqp transport is closed; open a new one")
        return self._conn

    async def publish_channel(self, timeout: float) -> AbstractChannel:
        """The confirm-mode channel, reopened if a channel error closed it.

        Raises BrokerUnavailable when the connection is gone, however that shows.
        """
        conn = await self.connection(timeout)
        channel = self._publish_channel
        if channel is None or channel.is_closed:
            async with self._channel_lock:
                channel = self._publish_channel
                if channel is None or channel.is_closed:
                    try:
                        channel = await open_channel(conn, confirms=True)
                    except CONNECTION_EXCEPTIONS as exc:
                        # The connection died before its close callback ran.
                        raise BrokerUnavailable(
                            f"RabbitMQ at {self.display} closed the connection ({exc}); "
                            "reconnecting (messages are kept by the outbox if one is configured)"
                        ) from None
                    self._publish_channel = channel
        return channel

    async def close(self) -> None:
        self._closed = True
        self._ready.clear()
        self._lost.set()
        if self._supervisor is not None:
            await cancel_and_wait(self._supervisor)
            self._supervisor = None
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await asyncio.wait_for(conn.close(), timeout=5.0)
