"""A paced producer that times each publish: the node-failure tests' load.

Usage: python timed_producer.py PREFIX COUNT RATE   (settings from STALWART_CONFIG)

Publishes ids ``PREFIX-000000`` .. on ``chaos.item`` in batches of 5 at RATE
messages per second, straight to the broker (no outbox), so that each line
measures what the cluster gives: a batch the broker did not confirm is
published again, same ids, until it is (the idempotent consumer keeps one
effect). Prints ``ok START END ATTEMPTS`` (epoch seconds) per batch, then ``done``;
``hung`` when a publish neither returned nor raised within a minute.
"""

from __future__ import annotations

import asyncio
import sys
import time

from stalwart.bus import open_bus
from stalwart.config import load_settings
from stalwart.envelope import Envelope
from stalwart.errors import StalwartError

BATCH = 5
HUNG = 60.0  # seconds after which a publish that neither returned nor raised is reported


async def main(prefix: str, count: int, rate: float) -> None:
    bus = open_bus(load_settings(), outbox=False)
    await bus.start()
    try:
        started = time.monotonic()
        for first in range(0, count, BATCH):
            # Paced from the start, so that a stall is followed by catching up.
            await asyncio.sleep(max(0.0, started + first / rate - time.monotonic()))
            batch = [
                Envelope.new("chaos.item", {"n": n}, id=f"{prefix}-{n:06d}")
                for n in range(first, min(first + BATCH, count))
            ]
            begin, attempts = time.time(), 0
            while True:
                attempts += 1
                try:
                    await asyncio.wait_for(bus.publish(batch), HUNG)
                    break
                except StalwartError as exc:
                    print(f"retry {time.time():.3f} {exc}", flush=True)
                    await asyncio.sleep(0.1)
                except TimeoutError:  # publish has timeouts of its own: this is a bug
                    print(f"hung {time.time():.3f} publish did not return in {HUNG}s", flush=True)
            print(f"ok {begin:.3f} {time.time():.3f} {attempts}", flush=True)
        print("done", flush=True)
    finally:
        await bus.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
