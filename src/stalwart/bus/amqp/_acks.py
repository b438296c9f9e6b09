"""Acks of one consumer channel, sent in batches.

One ``basic.ack`` frame per message costs a frame, a trip through aiormq's
write queue and a socket write for each, which is most of a delivery's cost
on the client. Here an ack is recorded and the consumer moves on; a
background flush, at the event loop's next turn, sends one ack with
``multiple=True`` for every acked tag below the lowest tag still open on the
channel, and single acks for the acked tags above it (a message held by a
slow handler must not be acked by a ``multiple``). A flush sends its frames
in the order it computed them, one flush at a time, so that no tag is acked
twice (RabbitMQ closes the channel for that).

As with a single ack, nothing waits for the broker: an ack lost with the
connection means a redelivery, which at-least-once delivery allows.
"""

from __future__ import annotations

import asyncio
import logging

from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aiormq.abc import AbstractChannel

__all__ = ["Acks"]

log = logging.getLogger("stalwart.bus.amqp")


class Acks:
    """The delivery tags of one channel: which are open, and the acks not yet sent."""

    def __init__(self) -> None:
        self._channel: AbstractChannel | None = None
        self._open: dict[int, None] = {}  # in arrival order, so the first is the lowest
        self._acked: list[int] = []
        self._flush: asyncio.Task[None] | None = None

    def reset(self, channel: AbstractChannel | None) -> None:
        """A new channel (tags start again); what was open on the old one is redelivered."""
        self._channel = channel
        self._open.clear()
        self._acked.clear()

    def received(self, tag: int) -> None:
        self._open[tag] = None

    def closed(self, tag: int) -> None:
        """``tag`` is settled by a frame of its own (a nack): no longer open."""
        self._open.pop(tag, None)

    def ack(self, tag: int) -> None:
        """Record an ack; it is sent at the loop's next turn with the others."""
        self._open.pop(tag, None)
        self._acked.append(tag)
        if self._flush is None:
            self._flush = asyncio.ensure_future(self._send())

    async def flush(self) -> None:
        """Send every recorded ack now (before the channel closes)."""
        if self._acked and self._flush is None:
            self._flush = asyncio.ensure_future(self._send())
        if self._flush is not None:
            await asyncio.shield(self._flush)

    def _frames(self) -> list[tuple[int, bool]]:
        """(tag, multiple) of the acks to send, lowest first."""
        acked, self._acked = sorted(self._acked), []
        lowest_open = next(iter(self._open), None)
        below = [t for t in acked if lowest_open is None or t < lowest_open]
        frames = [(below[-1], True)] if below else []
        frames.extend((t, False) for t in acked[len(below) :])
        return frames

    async def _send(self) -> None:
        try:
            while self._acked:
                channel = self._channel
                for tag, multiple in self._frames():
                    if channel is None:
                        break
                    await channel.basic_ack(tag, multiple=multiple, wait=False)
        except CONNECTION_EXCEPTIONS as exc:
            log.info("sending acks failed (%s); those messages will be redelivered", exc)
        finally:
            self._flush = None
