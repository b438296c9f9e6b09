"""End-to-end throughput of the embedded bus against SQLite queue peers.

One producer process keeps up to 256 publishes of 1 KiB messages in flight
and two consumer processes hand each delivery to a task that acks it
(``bus-full``: a service's shape), or, in the plain SQLite peer's shape
(``bus-full-batched``), the producer publishes batches of 100 one after the
other and each consumer takes what one claim leased (at most 100) and acks it
at once (``consume_batches`` and ``ack_all``). Every contender gets the same count
of messages, its database made before its consumers start, and the bus's
durability per step (publishes fsynced, claims and acks committed without).
For each contender it reports throughput (messages / second from the first
publish to the last ack), p50
and p99 latency (publish to ack) and lost and duplicated counts, as medians
of several runs, and the ratios of the bus's rate to the peers'. It also
measures an idle consumer process's RSS and CPU.

Run: ``.venv/bin/python -m benchmarks.bench_embedded_bus [--messages N] [--runs R]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import psutil

from benchmarks._embedded_peers import (
    PLAIN_BATCH,
    body_for,
    plain_consume,
    plain_prepare,
    plain_produce,
    pq_consume,
    pq_prepare,
    pq_produce,
)
from stalwart.bus import QueueSpec, ack_all, consume_batches
from stalwart.bus.sqlite import SqliteTransport
from stalwart.envelope import Envelope

__all__ = ["main"]

_CTX = multiprocessing.get_context("spawn")
_IN_FLIGHT = 256
_CONSUMERS = 2
_QUEUE = "bench"


@dataclass(frozen=True)
class Result:
    rate: float
    p50_ms: float
    p99_ms: float
    lost: int
    duplicated: int


# -- the embedded bus ----------------------------------------------------------------------


def _bus_url(path: Path) -> str:
    return f"sqlite:///{path}"


async def _bus_consume_async(
    path: Path,
    durability: Any,
    ready: Event,
    stop: Event,
    progress: Synchronized[int],
    batched: bool = False,
) -> list[tuple[int, float, float]]:
    """A task per delivery acking it (a service's shape), or with ``batched`` each claim's
    deliveries handled in turn and acked together (the plain peer's shape)."""
    bus = SqliteTransport(_bus_url(path), durability=durability)
    await bus.start()
    seen: list[tuple[int, float, float]] = []
    handlers: set[asyncio.Task[None]] = set()

    async def handle(delivery: Any) -> None:
        body = delivery.envelope.body
        await delivery.ack()
        seen.append((body["n"], body["t"], time.time()))
        progress.value += 1

    async def one_by_one() -> None:
        async for delivery in bus.consume(_QUEUE, _IN_FLIGHT):
            task = asyncio.create_task(handle(delivery))
            handlers.add(task)
            task.add_done_callback(handlers.discard)

    async def in_batches() -> None:
        async for batch in consume_batches(bus, _QUEUE, PLAIN_BATCH):  # claims as the peer's
            bodies = [delivery.envelope.body for delivery in batch]
            await ack_all(bus, batch)
            acked = time.time()  # the ack is the DELETE's commit, as the peer's
            seen.extend((body["n"], body["t"], acked) for body in bodies)
            progress.value += len(bodies)

    consumer = asyncio.create_task(in_batches() if batched else one_by_one())
    ready.set()
    await asyncio.to_thread(stop.wait)
    consumer.cancel()
    await asyncio.gather(consumer, *handlers, return_exceptions=True)
    await bus.close()
    return seen


def _bus_kind(kind: str) -> tuple[str, bool]:
    """``bus-DURABILITY`` (a service's shape) or ``bus-DURABILITY-batched`` (the peer's):
    (durability, batched)."""
    durability, _, shape = kind.removeprefix("bus-").partition("-")
    return durability, shape == "batched"


def _bus_consume(
    path: Path, kind: str, ready: Event, stop: Event, progress: Synchronized[int]
) -> list[tuple[int, float, float]]:
    durability, batched = _bus_kind(kind)
    return asyncio.run(_bus_consume_async(path, durability, ready, stop, progress, batched))


async def _bus_produce_async(path: Path, durability: Any, count: int) -> None:
    """Many publishers: up to 256 single-message publishes in flight."""
    bus = SqliteTransport(_bus_url(path), durability=durability)
    await bus.start()
    counter = iter(range(count))

    async def publisher() -> None:
        for n in counter:
            await bus.publish([Envelope.new("bench.item", body_for(n), kind="Bench")])

    await asyncio.gather(*(publisher() for _ in range(_IN_FLIGHT)))
    await bus.close()


async def _bus_produce_batched_async(path: Path, durability: Any, count: int) -> None:
    """The plain peer's shape: one publisher, batches of 100, each on disk before the next."""
    bus = SqliteTransport(_bus_url(path), durability=durability)
    await bus.start()
    for start in range(0, count, PLAIN_BATCH):
        numbers = range(start, min(start + PLAIN_BATCH, count))
        await bus.publish([Envelope.new("bench.item", body_for(n), kind="Bench") for n in numbers])
    await bus.close()


async def _bus_prepare(path: Path) -> None:
    bus = SqliteTransport(_bus_url(path))
    await bus.start()
    await bus.declare(QueueSpec(_QUEUE, ("bench.#",)))
    await bus.close()


def _bus_producer(kind: str) -> Callable[[Path, int], None]:
    """Many publishers, or batches of 100 one after the other (see :func:`_bus_kind`)."""
    durability, batched = _bus_kind(kind)
    run = _bus_produce_batched_async if batched else _bus_produce_async

    def produce(path: Path, count: int) -> None:
        asyncio.run(run(path, durability, count))

    return produce


# -- the driver ----------------------------------------------------------------------------


def _consumer_main(
    kind: str,
    path: Path,
    ready: Event,
    stop: Event,
    progress: Synchronized[int],
    results: Any,
) -> None:
    if kind.startswith("bus-"):
        seen = _bus_consume(path, kind, ready, stop, progress)
    elif kind == "persist-queue":
        seen = pq_consume(path, ready, stop, progress)
    else:
        seen = plain_consume(path, ready, stop, progress)
    results.put(seen)


def _producer_for(kind: str) -> Callable[[Path, int], None]:
    if kind.startswith("bus-"):
        return _bus_producer(kind)
    return pq_produce if kind == "persist-queue" else plain_produce


def _wait_for_progress(counters: list[Synchronized[int]], count: int) -> None:
    """Until ``count`` acks and a quiet second (late duplicates), or 10 s without progress."""
    last, last_change = -1, time.monotonic()
    while True:
        done = sum(c.value for c in counters)
        if done != last:
            last, last_change = done, time.monotonic()
        quiet = time.monotonic() - last_change
        if (done >= count and quiet > 1.0) or quiet > 10.0:
            return
        time.sleep(0.01)


def run_once(kind: str, count: int, workdir: Path) -> Result:
    """One run: consumers ready and idle, then produce ``count`` and wait for every ack."""
    path = workdir / f"{kind}-{time.monotonic_ns()}.db"
    # Every contender's database exists before its consumers open it.
    if kind.startswith("bus-"):
        asyncio.run(_bus_prepare(path))
    elif kind == "persist-queue":
        pq_prepare(path)
    else:
        plain_prepare(path)
    stop = _CTX.Event()
    results = _CTX.Queue()
    readies, counters, procs = [], [], []
    for _ in range(_CONSUMERS):
        ready, progress = _CTX.Event(), _CTX.Value("q", 0, lock=False)
        proc = _CTX.Process(
            target=_consumer_main, args=(kind, path, ready, stop, progress, results)
        )
        proc.start()
        readies.append(ready)
        counters.append(progress)
        procs.append(proc)
    seen: list[tuple[int, float, float]] = []
    try:
        for ready in readies:
            if not ready.wait(60):
                raise RuntimeError(f"a {kind} consumer did not start within 60 s")
        time.sleep(0.3)
        started = time.time()
        _producer_for(kind)(path, count)
        _wait_for_progress(counters, count)
        stop.set()
        for _ in procs:
            seen.extend(results.get(timeout=60))
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    numbers = [n for n, _, _ in seen]
    unique = set(numbers)
    latencies = sorted(acked - sent for _, sent, acked in seen) or [0.0]
    finished = max((acked for _, _, acked in seen), default=time.time())
    return Result(
        rate=len(unique) / max(finished - started, 1e-9),
        p50_ms=1000 * latencies[len(latencies) // 2],
        p99_ms=1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        lost=count - len(unique & set(range(count))),
        duplicated=len(numbers) - len(unique),
    )


def _median(results: list[Result]) -> Result:
    return Result(
        rate=statistics.median(r.rate for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        lost=max(r.lost for r in results),
        duplicated=max(r.duplicated for r in results),
    )


async def _ping(path: Path, count: int) -> None:
    """Publish ``count`` messages one by one, each to an idle consumer."""
    bus = SqliteTransport(_bus_url(path))
    await bus.start()
    for n in range(count):
        await bus.publish([Envelope.new("bench.ping", body_for(n), kind="Bench")])
        await asyncio.sleep(0.2)
    await bus.close()


@dataclass(frozen=True)
class Idle:
    rss_mib: float
    cpu_percent: float
    wake_p50_ms: float
    wake_max_ms: float


def _idle_consumer(path: Path, pings: int = 20) -> Idle:
    """An idle bus consumer process: RSS, CPU over 2 s, and publish-to-ack wake-up latency."""
    asyncio.run(_bus_prepare(path))
    stop, results = _CTX.Event(), _CTX.Queue()
    ready, progress = _CTX.Event(), _CTX.Value("q", 0, lock=False)
    proc = _CTX.Process(
        target=_consumer_main, args=("bus-full", path, ready, stop, progress, results)
    )
    proc.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the idle consumer did not start within 60 s")
        time.sleep(1.0)
        meter = psutil.Process(proc.pid)
        meter.cpu_percent(None)
        time.sleep(2.0)
        cpu = meter.cpu_percent(None)
        rss = meter.memory_info().rss / 2**20
        asyncio.run(_ping(path, pings))
        _wait_for_progress([progress], pings)
        stop.set()
        seen = results.get(timeout=30)
    finally:
        stop.set()
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    wakes = sorted(1000 * (acked - sent) for _, sent, acked in seen) or [float("nan")]
    return Idle(rss, cpu, statistics.median(wakes), wakes[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_embedded_bus", description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000, help="per run, for every contender")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    contenders = ("bus-full", "bus-full-batched", "bus-normal", "plain-sqlite", "persist-queue")
    with tempfile.TemporaryDirectory(prefix="bench-bus-") as tmp:
        workdir = Path(tmp)
        # Rounds interleave the contenders, so a change in the machine's load
        # during the run weighs on all of them alike.
        runs: dict[str, list[Result]] = {kind: [] for kind in contenders}
        for round_ in range(1, args.runs + 1):
            for kind in contenders:
                runs[kind].append(run_once(kind, args.messages, workdir))
            rates = ", ".join(f"{kind} {r[-1].rate:,.0f}" for kind, r in runs.items())
            print(f"round {round_}: {rates} msg/s", flush=True)
        medians = {kind: _median(results) for kind, results in runs.items()}
        idle = _idle_consumer(workdir / "idle.db")
    print()
    print(f"{'contender':16s} {'msg/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'lost':>5s} {'dup':>6s}")
    for kind, r in medians.items():
        print(
            f"{kind:16s} {r.rate:9,.0f} {r.p50_ms:8.1f} {r.p99_ms:8.1f} "
            f"{r.lost:5d} {r.duplicated:6d}"
        )
    full = medians["bus-full"].rate
    print()
    plain = medians["plain-sqlite"].rate
    print(f"bus-full / plain-sqlite:  {full / plain:.2f}")
    batched = medians["bus-full-batched"].rate
    print(f"bus-full-batched / plain-sqlite (same shape): {batched / plain:.2f}")
    print(f"bus-full / persist-queue: {full / medians['persist-queue'].rate:.2f}")
    print(f"bus-normal / bus-full:    {medians['bus-normal'].rate / full:.2f}")
    print(
        f"idle consumer process: RSS {idle.rss_mib:.0f} MiB, CPU {idle.cpu_percent:.1f}% of a "
        f"core over 2 s; wake-up (publish -> ack, other process) p50 {idle.wake_p50_ms:.1f} ms, "
        f"max {idle.wake_max_ms:.1f} ms"
    )


if __name__ == "__main__":
    main()
