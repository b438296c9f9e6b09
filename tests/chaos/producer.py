"""A producer process for the fault suite: publishes COUNT messages with known ids.

Usage: python producer.py PREFIX COUNT   (settings from STALWART_CONFIG / STALWART_HOME)

Ids are ``PREFIX-000000`` .. ``PREFIX-<COUNT-1>``, published on ``chaos.item``
in batches of 50 through the configured bus (behind this process's outbox on
a network broker, so a broker outage only delays them). Prints
``published N`` after each batch and ``drained N`` once every message has
left the outbox.
"""

from __future__ import annotations

import asyncio
import sys

from stalwart.bus import open_bus
from stalwart.bus.outbox import OutboxTransport
from stalwart.config import load_settings
from stalwart.envelope import Envelope

BATCH = 50


def message_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{n:06d}" for n in range(count)]


async def main(prefix: str, count: int) -> None:
    bus = open_bus(load_settings())
    await bus.start()
    try:
        ids = message_ids(prefix, count)
        for start in range(0, count, BATCH):
            batch = [
                Envelope.new("chaos.item", {"n": start + i}, id=id_)
                for i, id_ in enumerate(ids[start : start + BATCH])
            ]
            await bus.publish(batch)
            print(f"published {start + len(batch)}", flush=True)
        if isinstance(bus, OutboxTransport):
            await bus.wait_drained(timeout=300.0)
        print(f"drained {count}", flush=True)
    finally:
        await bus.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
