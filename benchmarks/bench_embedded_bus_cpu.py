"""CPU time per message of the embedded bus's producer and of its consumer, apart.

On a shared, loaded machine the throughput of ``bench_embedded_bus`` swings
by 2x from run to run, while the CPU a message costs stays put. This runs
the same producer (256 publishes of 1 KiB in flight, ``durability = "full"``)
into a fresh bus file, then one consumer that acks every message, and reports
each side's process CPU time (all threads: the event loop and the writer) per
message, as medians of several runs.

Run: ``.venv/bin/python -m benchmarks.bench_embedded_bus_cpu [--messages N] [--runs R]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_embedded_bus import _bus_consume_async, _bus_prepare, _bus_produce_async

__all__ = ["main"]


class _Progress:
    """The consumer's ack counter; sets ``stop`` once ``count`` messages are acked."""

    def __init__(self, count: int, stop: threading.Event) -> None:
        self._count = count
        self._stop = stop
        self._value = 0

    @property
    def value(self) -> int:
        return self._value

    @value.setter
    def value(self, value: int) -> None:
        self._value = value
        if value >= self._count:
            self._stop.set()


def _consume_all(path: Path, count: int) -> None:
    """The throughput benchmark's consumer, in this process, until ``count`` acks."""
    stop = threading.Event()
    # Stand-ins for the multiprocessing Event and Value it gets in its own process.
    ready: Any = threading.Event()
    until: Any = stop
    progress: Any = _Progress(count, stop)
    asyncio.run(_bus_consume_async(path, "full", ready, until, progress))


def _cpu_per_message(work: Any, count: int) -> float:
    started = time.process_time()
    work()
    return 1e6 * (time.process_time() - started) / count


def run_once(count: int, workdir: Path) -> tuple[float, float]:
    """(producer, consumer) CPU microseconds per message for one fresh bus file."""
    path = workdir / f"cpu-{time.monotonic_ns()}.db"
    asyncio.run(_bus_prepare(path))
    produce = _cpu_per_message(lambda: asyncio.run(_bus_produce_async(path, "full", count)), count)
    consume = _cpu_per_message(lambda: _consume_all(path, count), count)
    return produce, consume


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_embedded_bus_cpu", description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    produced, consumed = [], []
    with tempfile.TemporaryDirectory(prefix="bench-bus-cpu-") as tmp:
        for _ in range(args.runs):
            produce, consume = run_once(args.messages, Path(tmp))
            produced.append(produce)
            consumed.append(consume)
            print(f"producer {produce:.1f} us CPU/msg, consumer (with acks) {consume:.1f}")
    print(
        f"median of {args.runs}: producer {statistics.median(produced):.1f} us CPU/msg, "
        f"consumer {statistics.median(consumed):.1f}; load average at end "
        f"{os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
