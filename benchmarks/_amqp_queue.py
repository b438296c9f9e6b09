"""The one service queue the RabbitMQ benchmarks use, and how to drop it after a run.

Only core dependencies here, so that a benchmark's child process runs
without the benchmark extras (FastStream, persist-queue).
"""

from __future__ import annotations

import aio_pika

from stalwart.bus._amqp_names import dead_queue, directory_queue, dlx_exchange, work_queue

__all__ = ["SERVICE", "TOPIC", "drop"]

TOPIC = "bench.item"
SERVICE = "bench"


async def drop(url: str, exchange: str) -> None:
    """Delete ``exchange``, its dead-letter exchange and the service's queues."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for name in (
            work_queue(exchange, SERVICE),
            dead_queue(exchange, SERVICE),
            directory_queue(exchange),
        ):
            await channel.queue_delete(name)
        await channel.exchange_delete(exchange)
        await channel.exchange_delete(dlx_exchange(exchange))
    finally:
        await connection.close()
