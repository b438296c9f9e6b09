"""A consumer process for the kill -9 test: takes one message and holds it.

Usage: python chaos_consumer.py AMQP_URL EXCHANGE SERVICE
Prints ``holding <id>`` once it has a message, then works on it forever
(until the test kills it with SIGKILL, mid-message).
"""

from __future__ import annotations

import asyncio
import sys

from stalwart.bus.amqp import AmqpTransport


async def main(url: str, exchange: str, service: str) -> None:
    bus = AmqpTransport(url, exchange=exchange)
    await bus.start()
    async for delivery in bus.consume(service, 1):
        assert delivery.envelope is not None
        print(f"holding {delivery.envelope.id}", flush=True)
        await asyncio.sleep(3600)  # a long handler, killed before it acks


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
