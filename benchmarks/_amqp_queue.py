"""The queues the RabbitMQ benchmarks use, and how to drop them after a run.

Only core dependencies here, so that a benchmark's child process runs
without the benchmark extras (FastStream, persist-queue). The queue names
are imported inside :func:`drop`: the effectively-once child imports this
module while running an older tree, whose bus has another layout.
"""

from __future__ import annotations

import aio_pika

__all__ = ["RECORDER", "SERVICE", "TOPIC", "drop"]

TOPIC = "bench.item"
SERVICE = "bench"
RECORDER = "bench-recorder"  # stands for the persister's queue: bound to every topic


async def drop(url: str, exchange: str, services: tuple[str, ...] = (SERVICE,)) -> None:
    """Delete ``exchange``, its dead-letter exchange and the ``services``' queues."""
    from stalwart.bus.amqp._names import dead_queue, directory_queue, dlx_exchange, work_queue

    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        names = [q(exchange, s) for s in services for q in (work_queue, dead_queue)]
        for name in (*names, directory_queue(exchange)):
            await channel.queue_delete(name)
        await channel.exchange_delete(exchange)
        await channel.exchange_delete(dlx_exchange(exchange))
    finally:
        await connection.close()
