"""Dead-letter queue browsing, requeueing and purging for the amqp transport.

Browsing uses ``basic.get`` without ack on a temporary channel: messages got
are held by that channel and all go back to the queue, in place, when it
closes. Requeue publishes a confirmed fresh copy to the work queue before
acking the dead one, so a failure in between duplicates rather than loses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)

from stalwart.bus._transport import DeadLetter
from stalwart.bus.amqp._channels import find_queue, temporary_channel
from stalwart.bus.amqp._codec import copy_message, header_int
from stalwart.bus.amqp._names import (
    ATTEMPT_HEADER,
    DEAD_KEY_HEADER,
    DIED_AT_HEADER,
    ERROR_HEADER,
    QUEUE_HEADER,
    REASON_HEADER,
    dead_queue,
    work_queue,
)
from stalwart.envelope import decode
from stalwart.errors import DecodeError

__all__ = ["browse_dead", "purge_dead", "requeue_dead"]

_GET_TIMEOUT = 5.0
_SETTLE_WAIT = 2.0  # seconds to wait for counted messages to become gettable
_EMPTY_RETRIES = 3  # empty gets tolerated once the counted messages were got
_DEATH_HEADERS = frozenset(
    {REASON_HEADER, QUEUE_HEADER, DIED_AT_HEADER, DEAD_KEY_HEADER, ERROR_HEADER}
)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)


def dead_key(message: AbstractIncomingMessage) -> str:
    """A stable handle: the key stamped when it died, else its id, else a body digest."""
    headers = message.headers or {}
    return (
        _text(headers.get(DEAD_KEY_HEADER))
        or message.message_id
        or hashlib.sha256(message.body).hexdigest()[:32]
    )


def _reason(headers: dict[str, Any]) -> str:
    reason = _text(headers.get(REASON_HEADER))
    if reason:
        return reason
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return f"broker: {_text(deaths[0].get('reason')) or 'unknown'}"
    return "unknown"


def _died_at(headers: dict[str, Any]) -> datetime:
    value = _text(headers.get(DIED_AT_HEADER))
    if value:
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value)
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        when = deaths[0].get("time")
        if isinstance(when, datetime):
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _dead_letter(message: AbstractIncomingMessage, service: str) -> DeadLetter:
    headers = dict(message.headers or {})
    try:
        envelope = decode(message.body)
    except DecodeError:
        envelope = None
    return DeadLetter(
        envelope=envelope,
        raw=message.body,
        queue=_text(headers.get(QUEUE_HEADER)) or service,
        reason=_reason(headers),
        attempts=header_int(headers, ATTEMPT_HEADER, envelope.attempt if envelope else 1),
        died_at=_died_at(headers),
        key=dead_key(message),
    )


class _DeadPass:
    """One pass over a dead-letter queue on a temporary channel.

    A quorum queue applies the return of messages held by a just-closed
    channel a moment later: until then they are neither counted nor gettable.
    So an empty get is retried for a while (as long as ``_SETTLE_WAIT`` while
    fewer than the counted messages were got), and :func:`_dead_pass` waits on
    exit until what was got and not acked is counted again, so that stats read
    right after a browse are true.
    """

    def __init__(self, channel: AbstractChannel, queue: AbstractQueue) -> None:
        self.channel = channel
        self._queue = queue
        self.counted = int(queue.declaration_result.message_count or 0)
        self.acked = 0

    async def letters(self, limit: int) -> AsyncIterator[AbstractIncomingMessage]:
        """Get (without ack) up to ``limit`` dead letters."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SETTLE_WAIT
        got = misses = 0
        while got < limit:
            message = await self._queue.get(no_ack=False, fail=False, timeout=_GET_TIMEOUT)
            if message is None:
                misses += 1
                if loop.time() > deadline or (got >= self.counted and misses > _EMPTY_RETRIES):
                    return
                await asyncio.sleep(0.05)
                continue
            got += 1
            yield message

    async def remove(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        self.acked += 1


@contextlib.asynccontextmanager
async def _dead_pass(
    conn: AbstractConnection, exchange: str, service: str
) -> AsyncIterator[_DeadPass]:
    name = dead_queue(exchange, service)
    async with temporary_channel(conn) as channel:
        dead = _DeadPass(channel, await find_queue(conn, channel, name))
        yield dead
    await _until_counted(conn, name, dead.counted - dead.acked)


async def _until_counted(conn: AbstractConnection, name: str, expected: int) -> None:
    """Wait (at most ``_SETTLE_WAIT``) until queue ``name`` counts ``expected`` messages."""
    if expected <= 0:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _SETTLE_WAIT
    async with temporary_channel(conn) as channel:
        while loop.time() < deadline:
            queue = await find_queue(conn, channel, name)
            if (queue.declaration_result.message_count or 0) >= expected:
                return
            await asyncio.sleep(0.02)


async def browse_dead(
    conn: AbstractConnection, exchange: str, service: str, limit: int
) -> list[DeadLetter]:
    async with _dead_pass(conn, exchange, service) as dead:
        return [_dead_letter(message, service) async for message in dead.letters(limit)]


async def requeue_dead(
    conn: AbstractConnection, exchange: str, service: str, keys: Sequence[str] | None
) -> int:
    """Copy matching dead letters back to the work queue at attempt 1; returns how many."""
    wanted = None if keys is None else set(keys)
    async with _dead_pass(conn, exchange, service) as dead:
        async for message in dead.letters(1_000_000):
            if wanted is not None and dead_key(message) not in wanted:
                continue
            fresh = copy_message(message, {ATTEMPT_HEADER: 1}, expires_at=None, drop=_DEATH_HEADERS)
            await dead.channel.default_exchange.publish(
                fresh, routing_key=work_queue(exchange, service), timeout=10.0
            )
            await dead.remove(message)
    return dead.acked


async def purge_dead(
    conn: AbstractConnection, exchange: str, service: str, keys: Sequence[str] | None
) -> int:
    """Delete matching dead letters (all when ``keys`` is None); returns how many."""
    if keys is None:
        async with temporary_channel(conn) as channel:
            queue = await find_queue(conn, channel, dead_queue(exchange, service))
            result = await queue.purge(timeout=10.0)
            return int(result.message_count or 0)
    wanted = set(keys)
    async with _dead_pass(conn, exchange, service) as dead:
        async for message in dead.letters(1_000_000):
            if dead_key(message) in wanted:
                await dead.remove(message)
    return dead.acked
