"""The outbox's drain rate after an outage, against RabbitMQ's own publish rate
and a persist-queue spool.

Both spools store 1 KiB messages on local disk while RabbitMQ is
unreachable (batches of 100, one durable transaction per batch), then, once
the broker is back, forward everything in order with publisher confirms to
a quorum queue. The peer is persist-queue's ``SQLiteQueue`` (PyPI
persist-queue) drained by an aio-pika publisher in batches of the same size
as the outbox's, each batch removed from the spool only after its confirms.
In the same run, the bar: stalwart's ``AmqpTransport.publish`` of the same
envelopes in batches of the outbox's size, to the same kind of queue.
Medians of ``--runs`` runs of spool rate and drain rate, and the ratios.

Run: ``.venv/bin/python -m benchmarks.bench_outbox [--messages N] [--runs R]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
from persistqueue import SQLiteQueue
from persistqueue.exceptions import Empty

from benchmarks._amqp_peers import SERVICE, TOPIC, drop, payload
from stalwart.bus import QueueSpec
from stalwart.bus.amqp import AmqpTransport
from stalwart.bus.outbox import OutboxTransport, destination
from stalwart.envelope import Envelope, encode

__all__ = ["main"]

_URL = os.environ.get("STALWART_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
_DOWN = "amqp://guest:guest@127.0.0.1:1/"
_BATCH = 100
_DRAIN_BATCH = 200


async def _declare_target(exchange: str) -> None:
    """The service queue the spooled messages are meant for."""
    target = AmqpTransport(_URL, exchange=exchange)
    await target.start()
    try:
        await target.declare(QueueSpec(SERVICE, (TOPIC,)))
    finally:
        await target.close()


async def _queue_ready(exchange: str) -> int:
    bus = AmqpTransport(_URL, exchange=exchange)
    await bus.start()
    try:
        return (await bus.queue_stats(SERVICE)).ready
    finally:
        await bus.close()


async def _outbox_run(messages: int, folder: Path) -> tuple[float, float]:
    exchange = f"bench-outbox-{uuid.uuid4().hex[:8]}"
    await _declare_target(exchange)
    spool = folder / f"{exchange}.db"
    try:
        # The outage: the broker is unreachable, publishes go to the spool.
        down = OutboxTransport(AmqpTransport(_DOWN, exchange=exchange), spool, forward=False)
        await down.start()
        body = payload()
        started = time.perf_counter()
        for _ in range(0, messages, _BATCH):
            await down.publish([Envelope.new(TOPIC, body) for _ in range(_BATCH)])
        spool_rate = messages / (time.perf_counter() - started)
        await down.close()
        # The outage was played by an unreachable URL; the spool records each row's
        # bus, so the rows are given to the real one, as if it had been down.
        with sqlite3.connect(spool) as db:
            db.execute("UPDATE outbox SET bus = ?", (destination(_URL),))
        # The broker is back: the next start drains the spool.
        up = OutboxTransport(
            AmqpTransport(_URL, exchange=exchange),
            spool,
            forward=False,
            batch_size=_DRAIN_BATCH,
        )
        await up.start()
        started = time.perf_counter()
        forwarded = await up.flush(timeout=300.0)
        drain_rate = forwarded / (time.perf_counter() - started)
        await up.close()
        assert await _queue_ready(exchange) == messages, "outbox lost messages"
        return spool_rate, drain_rate
    finally:
        await drop(_URL, exchange)


async def _publish_run(messages: int) -> float:
    """The transport's own publish rate: batches of the drain's size, confirmed."""
    exchange = f"bench-publish-{uuid.uuid4().hex[:8]}"
    await _declare_target(exchange)
    bus = AmqpTransport(_URL, exchange=exchange)
    await bus.start()
    try:
        body = payload()
        envelopes = [Envelope.new(TOPIC, body) for _ in range(messages)]
        started = time.perf_counter()
        for start in range(0, messages, _DRAIN_BATCH):
            await bus.publish(envelopes[start : start + _DRAIN_BATCH])
        rate = messages / (time.perf_counter() - started)
        assert (await bus.queue_stats(SERVICE)).ready == messages, "publish lost messages"
        return rate
    finally:
        await bus.close()
        await drop(_URL, exchange)


async def _persist_queue_run(messages: int, folder: Path) -> tuple[float, float]:
    exchange = f"bench-pq-{uuid.uuid4().hex[:8]}"
    await _declare_target(exchange)
    path = str(folder / exchange)
    try:
        queue = SQLiteQueue(path, auto_commit=False, multithreading=True)
        body = payload()
        started = time.perf_counter()
        for _ in range(0, messages, _BATCH):
            rows = [encode(Envelope.new(TOPIC, body)) for _ in range(_BATCH)]
            await asyncio.to_thread(_put_batch, queue, rows)
        spool_rate = messages / (time.perf_counter() - started)
        connection = await aio_pika.connect(_URL)
        channel = await connection.channel(publisher_confirms=True)
        topic = await channel.get_exchange(exchange)
        started = time.perf_counter()
        forwarded = 0
        while True:
            rows = await asyncio.to_thread(_get_batch, queue, _DRAIN_BATCH)
            if not rows:
                break
            await asyncio.gather(
                *(
                    topic.publish(
                        aio_pika.Message(row, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=TOPIC,
                    )
                    for row in rows
                )
            )
            await asyncio.to_thread(queue.task_done)  # remove only after the confirms
            forwarded += len(rows)
        drain_rate = forwarded / (time.perf_counter() - started)
        await connection.close()
        assert await _queue_ready(exchange) == messages, "persist-queue lost messages"
        return spool_rate, drain_rate
    finally:
        await drop(_URL, exchange)


def _put_batch(queue: SQLiteQueue, rows: list[bytes]) -> None:
    for row in rows:
        queue.put(row)
    queue.task_done()  # one commit per batch, like the outbox


def _get_batch(queue: SQLiteQueue, limit: int) -> list[bytes]:
    rows: list[bytes] = []
    while len(rows) < limit:
        try:
            rows.append(queue.get(block=False))
        except Empty:
            break
    return rows


async def _bench(messages: int, runs: int) -> None:
    results: dict[str, list[tuple[float, float]]] = {"outbox": [], "persist-queue": []}
    publish: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        folder = Path(tmp)
        for run in range(runs):
            publish.append(await _publish_run(messages))
            print(f"run {run + 1} {'publish':>13}: {publish[-1]:8.0f}/s", flush=True)
            for name, contender in (("outbox", _outbox_run), ("persist-queue", _persist_queue_run)):
                spool_rate, drain_rate = await contender(messages, folder)
                results[name].append((spool_rate, drain_rate))
                print(
                    f"run {run + 1} {name:>13}: spool {spool_rate:8.0f}/s  "
                    f"drain {drain_rate:8.0f}/s",
                    flush=True,
                )
    medians = {
        name: (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
        for name, rows in results.items()
    }
    print(f"\n{messages} x 1 KiB spooled during an outage, then drained; medians of {runs} runs")
    for name, (spool_rate, drain_rate) in medians.items():
        print(f"{name:>13}: spool {spool_rate:8.0f}/s  drain {drain_rate:8.0f}/s")
    bar = statistics.median(publish)
    print(f"{'publish':>13}: {bar:8.0f}/s (AmqpTransport, batches of {_DRAIN_BATCH})")
    ours, theirs = medians["outbox"], medians["persist-queue"]
    print(
        f"outbox / persist-queue: spool {ours[0] / theirs[0]:.2f}, drain {ours[1] / theirs[1]:.2f}"
    )
    paired = statistics.median(r[1] / p for r, p in zip(results["outbox"], publish, strict=True))
    print(
        f"outbox drain / publish: {ours[1] / bar:.2f}; median of the runs' own ratios {paired:.2f}"
    )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    # The outage is staged: the broker at port 1 refuses every connect, on purpose.
    logging.getLogger("aiormq.connection").setLevel(logging.CRITICAL)
    asyncio.run(_bench(args.messages, args.runs))


if __name__ == "__main__":
    main()
