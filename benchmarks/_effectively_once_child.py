"""One measurement of ``bench_effectively_once``, run in its own process.

The parent starts it with ``PYTHONPATH`` at the baseline's ``src/`` or the
current one, so this module uses only what both versions offer: ``Service``,
``ServiceRunner``, ``open_bus``, ``open_transport`` and the runner's
``counters``. It preloads ``--count`` messages, then times from the runner's
start until it has acked all of them (``counters.processed``, counted after
each ack in both versions), and prints one JSON line (:class:`Measurement`).

Run: ``python -m benchmarks._effectively_once_child --bus-url URL --store-url URL
--home DIR [--exchange NAME] [--count N] [--idempotent]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import stalwart
from benchmarks._amqp_queue import RECORDER, SERVICE, TOPIC
from benchmarks._embedded_peers import body_for
from stalwart.bus import QueueSpec, open_bus, open_transport
from stalwart.config import Settings
from stalwart.envelope import Envelope
from stalwart.service import Context, Service, ServiceRunner

__all__ = ["Measurement", "main", "measure"]

_PRELOAD_BATCH = 500
_POLL = 0.005  # seconds between looks at the ack counter


@dataclass(frozen=True)
class Measurement:
    rate: float  # messages acked per second, runner start to last ack
    seconds: float
    consumed: int  # acked by the runner (counters.processed)
    left: int  # still in the queue after the runner stopped (ready, in flight, delayed, dead)
    stalwart: str  # the package that ran, to check the parent got the version it meant


def _service(idempotent: bool) -> Service:
    service = Service(SERVICE)

    @service.handler(TOPIC, idempotent=idempotent)
    async def noop(ctx: Context, body: Any) -> None:
        return None

    return service


async def _preload(settings: Settings, service: Service, count: int) -> None:
    """Declare the service's queue and fill it, with a plain transport (no outbox);
    then a queue bound to every topic, as the persister's is in a deployment, so
    that life-cycle batches are stored (and confirmed) as they would be there."""
    bus = settings.bus
    loader = open_transport(bus.url, exchange=bus.exchange, queue_type=bus.queue_type)
    await loader.start()
    try:
        await loader.declare(service.queue_spec(settings))
        for first in range(0, count, _PRELOAD_BATCH):
            last = min(count, first + _PRELOAD_BATCH)
            await loader.publish([Envelope.new(TOPIC, body_for(n)) for n in range(first, last)])
        await loader.declare(QueueSpec(RECORDER, ("#",)))
    finally:
        await loader.close()


async def measure(settings: Settings, count: int, idempotent: bool, timeout: float) -> Measurement:
    """Preload ``count`` messages, then time one runner consuming them all."""
    service = _service(idempotent)
    await _preload(settings, service, count)
    transport = open_bus(settings)  # as `stalwart run` opens it: amqp behind the outbox
    await transport.start()
    try:
        runner = ServiceRunner(service, transport, settings)
        started = time.perf_counter()
        await runner.start()
        while runner.counters.processed < count:
            if time.perf_counter() - started > timeout:
                break
            await asyncio.sleep(_POLL)
        seconds = time.perf_counter() - started
        await runner.stop()
        stats = await transport.queue_stats(SERVICE)
    finally:
        await transport.close()
    consumed = runner.counters.processed
    return Measurement(
        rate=consumed / seconds,
        seconds=seconds,
        consumed=consumed,
        left=stats.ready + stats.inflight + stats.delayed + stats.dead,
        stalwart=stalwart.__file__ or "",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="_effectively_once_child", description=__doc__)
    parser.add_argument("--bus-url", required=True)
    parser.add_argument("--store-url", required=True)
    parser.add_argument("--home", required=True, help="a fresh directory (outbox, ids)")
    parser.add_argument("--exchange", default="stalwart", help="for amqp: a fresh name")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--idempotent", action="store_true")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to give up after")
    args = parser.parse_args(argv)
    settings = Settings.model_validate(
        {
            "home": args.home,
            "bus": {
                "url": args.bus_url,
                "exchange": args.exchange,
                "outbox": f"{args.home}/outbox.db",
            },
            "store": {"url": args.store_url},
        }
    )
    result = asyncio.run(measure(settings, args.count, args.idempotent, args.timeout))
    print(json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    main()
