"""stalwart over RabbitMQ against raw aio-pika and FastStream, same durability.

Every contender uses a quorum queue bound to a topic exchange, persistent
1 KiB messages and publisher confirms (batches of ``--batch`` publishes in
flight, each awaited for its confirm), and consumes with prefetch 256 and
one ack per message, on a connection opened before the clock starts (the
timed consume starts a consumer on it: stalwart's ``consume``, aio-pika's
``queue.iterator()``, FastStream's subscriber). Per run it measures publish
throughput, consume throughput and the latency of single messages
(confirmed publish to arrival at an already running consumer), and the
CPU time of this process per message published and consumed (user plus
system, which on a loaded machine says more than the wall clock); it prints
the median of ``--runs`` runs and stalwart's ratios.

Run: ``.venv/bin/python -m benchmarks.bench_amqp [--messages N] [--runs R]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

from benchmarks._amqp_peers import FastStreamPeer, Peer, RawPeer, StalwartPeer

__all__ = ["main"]

_URL = os.environ.get("STALWART_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
_ROUND_TRIPS = 30


_Outcome = tuple[float, float, float, float, float]


async def _one_run(peer: Peer, messages: int, batch: int) -> _Outcome:
    """(publish msg/s, consume msg/s, median round trip ms, CPU µs per message
    published, CPU µs per message consumed) for one fresh queue."""
    await peer.setup()
    try:
        started, cpu = time.perf_counter(), time.process_time()
        await peer.publish(messages, batch)
        publish_rate = messages / (time.perf_counter() - started)
        publish_cpu = (time.process_time() - cpu) / messages * 1e6
        started, cpu = time.perf_counter(), time.process_time()
        await peer.consume(messages)
        consume_rate = messages / (time.perf_counter() - started)
        consume_cpu = (time.process_time() - cpu) / messages * 1e6
        trips = await peer.round_trips(_ROUND_TRIPS)
        return publish_rate, consume_rate, statistics.median(trips), publish_cpu, consume_cpu
    finally:
        await peer.close()


async def _bench(messages: int, runs: int, batch: int) -> None:
    kinds = (StalwartPeer, RawPeer, FastStreamPeer)
    results: dict[str, list[_Outcome]] = {k.name: [] for k in kinds}
    for run in range(runs):
        for kind in kinds:  # interleaved, so that machine load hits every contender alike
            peer = kind(_URL, f"bench-{kind.name}-{uuid.uuid4().hex[:8]}")
            outcome = await _one_run(peer, messages, batch)
            results[kind.name].append(outcome)
            print(
                f"run {run + 1} {kind.name:>10}: publish {outcome[0]:8.0f}/s  "
                f"consume {outcome[1]:8.0f}/s  round trip {outcome[2]:6.2f} ms  "
                f"CPU/msg publish {outcome[3]:6.1f} µs consume {outcome[4]:6.1f} µs",
                flush=True,
            )
    medians = {
        name: tuple(statistics.median(r[i] for r in rows) for i in range(5))
        for name, rows in results.items()
    }
    print(f"\n{messages} x 1 KiB, quorum queue, persistent, confirms; medians of {runs} runs")
    print(
        f"{'':>10}  {'publish/s':>10}  {'consume/s':>10}  {'round trip ms':>13}  "
        f"{'CPU µs/publish':>14}  {'CPU µs/consume':>14}"
    )
    for name, (pub, con, rtt, pub_cpu, con_cpu) in medians.items():
        print(
            f"{name:>10}  {pub:10.0f}  {con:10.0f}  {rtt:13.2f}  {pub_cpu:14.1f}  {con_cpu:14.1f}"
        )
    ours = medians["stalwart"]
    for peer in ("aio-pika", "faststream"):
        theirs = medians[peer]
        print(
            f"stalwart / {peer}: publish {ours[0] / theirs[0]:.2f}, "
            f"consume {ours[1] / theirs[1]:.2f}, "
            f"round trip {ours[2] / theirs[2]:.2f} (lower is better); by CPU per message "
            f"(theirs / ours, higher is better): publish {theirs[3] / ours[3]:.2f}, "
            f"consume {theirs[4] / ours[4]:.2f}"
        )
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(_bench(args.messages, args.runs, args.batch))


if __name__ == "__main__":
    main()
