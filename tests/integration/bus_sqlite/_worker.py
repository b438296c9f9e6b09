"""A child process for the multi-process tests of the embedded bus.

``consume URL QUEUE OUT [--hold] [--prefetch N]``: consume ``QUEUE``, append
``<body> <attempt> <time>`` to ``OUT`` before each ack (so a kill between
the two shows as a duplicate, never as a loss) (``--hold``: never ack, write
``HOLD <body>`` and wait to be killed). ``produce URL TOPIC OUT COUNT``:
publish ``COUNT`` messages one at a time, appending each body to ``OUT`` once
``publish`` has returned. Both write ``READY`` first.
"""

from __future__ import annotations

import asyncio
import sys
import time

from stalwart.bus import open_transport
from stalwart.envelope import Envelope


def _line(out: str, text: str) -> None:
    with open(out, "a", encoding="utf-8") as handle:
        handle.write(text + "\n")


async def _consume(url: str, queue: str, out: str, hold: bool, prefetch: int) -> None:
    bus = open_transport(url)
    await bus.start()
    try:
        deliveries = bus.consume(queue, prefetch)
        _line(out, "READY")
        async for delivery in deliveries:
            assert delivery.envelope is not None
            body = delivery.envelope.body
            if hold:
                _line(out, f"HOLD {body} {delivery.attempt}")
                await asyncio.sleep(3600)
            _line(out, f"{body} {delivery.attempt} {time.time():.6f}")
            await delivery.ack()
    finally:
        await bus.close()


async def _produce(url: str, topic: str, out: str, count: int, sync: bool) -> None:
    bus = open_transport(url)
    await bus.start()
    try:
        _line(out, "READY")
        for n in range(count):
            await bus.publish([Envelope.new(topic, n)], sync=sync)
            _line(out, str(n))
    finally:
        await bus.close()


def main(argv: list[str]) -> None:
    mode, url, name, out = argv[:4]
    if mode == "consume":
        prefetch = int(argv[argv.index("--prefetch") + 1]) if "--prefetch" in argv else 10
        asyncio.run(_consume(url, name, out, "--hold" in argv, prefetch))
    else:
        asyncio.run(_produce(url, name, out, int(argv[4]), sync="--unsynced" not in argv))


if __name__ == "__main__":
    main(sys.argv[1:])
