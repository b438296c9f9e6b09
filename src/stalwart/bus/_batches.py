"""Consuming in batches on any transport: deliveries handed out and acked in groups.

A bulk consumer asks for what is ready as one list and acks the list in one
go. The embedded bus does both natively (:class:`~stalwart.bus.Batching`:
the rows of one claim, one transaction for their acks). Over any other
transport the deliveries that have arrived when the consumer asks make the
batch, and ``ack_all`` acks them together; RabbitMQ and NATS already gather
the acks of one event-loop turn into few frames.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from stalwart.bus._transport import Batching, Delivery, Transport

__all__ = ["ack_all", "consume_batches"]


async def consume_batches(
    transport: Transport, queue: str, prefetch: int
) -> AsyncIterator[Sequence[Delivery]]:
    """Deliveries from ``queue`` in lists, as many unsettled at a time as
    :meth:`~stalwart.bus.Transport.consume` keeps for ``prefetch``.

    Ends, and stops, as :meth:`~stalwart.bus.Transport.consume` does; closing
    it gives back at once what was received but not handed out.
    """
    if isinstance(transport, Batching):
        batches = transport.consume_batches(queue, prefetch)
        try:
            async for batch in batches:
                yield batch
        finally:
            await batches.aclose()  # type: ignore[attr-defined]
        return
    async for batch in _grouped(transport.consume(queue, prefetch)):
        yield batch


async def ack_all(transport: Transport, deliveries: Sequence[Delivery]) -> None:
    """Ack ``deliveries``: in one transaction where the transport can, else together."""
    if isinstance(transport, Batching):
        await transport.ack_all(deliveries)
        return
    await asyncio.gather(*(delivery.ack() for delivery in deliveries))


async def _grouped(deliveries: AsyncIterator[Delivery]) -> AsyncIterator[list[Delivery]]:
    """A batch: the first delivery awaited, then every one that arrived meanwhile."""
    arrived: asyncio.Queue[Delivery | None] = asyncio.Queue()
    failure: list[BaseException] = []

    async def receive() -> None:
        try:
            async for delivery in deliveries:
                arrived.put_nowait(delivery)
        except Exception as exc:  # raised to the batch consumer, as consume() would
            failure.append(exc)
        finally:
            arrived.put_nowait(None)

    receiver = asyncio.create_task(receive())
    try:
        ended = False
        while not ended:
            first = await arrived.get()
            if first is None:
                break
            batch = [first]
            while not arrived.empty():
                item = arrived.get_nowait()
                if item is None:
                    ended = True
                    break
                batch.append(item)
            yield batch
        if failure:
            raise failure[0]
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        await deliveries.aclose()  # type: ignore[attr-defined]
        while not arrived.empty():
            left = arrived.get_nowait()
            if left is not None:
                await left.release()  # received, never handed out: back at once
