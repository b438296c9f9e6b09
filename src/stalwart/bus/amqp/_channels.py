"""Opening channels without tripping over a channel number the broker still holds.

When the broker closes a channel (a passive declare or a consume on a missing
queue), aiormq frees the channel's number as soon as the ``Channel.Close``
frame arrives, a moment before it answers ``Close-Ok``. A channel another task
opens in that gap reuses the number, and RabbitMQ then closes the whole
connection with ``CHANNEL_ERROR - second 'channel.open' seen``.

So every channel is opened under one lock per connection, and every operation
the broker may answer by closing its channel runs under the same lock: by the
time such an operation has raised, ``Close-Ok`` is already queued ahead of any
later ``Channel.Open``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from weakref import WeakKeyDictionary

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

__all__ = ["find_queue", "gate", "open_channel", "temporary_channel"]

_locks: WeakKeyDictionary[AbstractConnection, asyncio.Lock] = WeakKeyDictionary()


@contextlib.asynccontextmanager
async def gate(conn: AbstractConnection) -> AsyncIterator[None]:
    """Hold ``conn``'s channel gate: open channels (``conn.channel``) only inside it."""
    lock = _locks.get(conn)
    if lock is None:
        lock = _locks[conn] = asyncio.Lock()
    async with lock:
        yield


async def open_channel(conn: AbstractConnection, *, confirms: bool) -> AbstractChannel:
    async with gate(conn):
        return await conn.channel(publisher_confirms=confirms)


async def find_queue(
    conn: AbstractConnection, channel: AbstractChannel, name: str
) -> AbstractQueue:
    """Declare ``name`` passively on ``channel`` (a channel of ``conn``).

    Raises ``ChannelNotFoundEntity`` when the queue is absent, which closes ``channel``.
    """
    async with gate(conn):
        return await channel.declare_queue(name, passive=True)


@contextlib.asynccontextmanager
async def temporary_channel(conn: AbstractConnection) -> AsyncIterator[AbstractChannel]:
    """A short-lived channel; closing it gives back every message got but not acked."""
    channel = await open_channel(conn, confirms=True)
    try:
        yield channel
    finally:
        if not channel.is_closed:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS):
                await channel.close()
