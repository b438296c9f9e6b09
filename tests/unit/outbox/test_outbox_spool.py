"""The outbox on its own: spooling when the broker is away, forwarding at the
next start, ordering, bad input and the forwarder lease (no broker needed:
the inner transports are a real unreachable amqp one and the embedded bus)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from stalwart.bus import QueueSpec, open_transport
from stalwart.bus._outbox_spool import Spool, SpoolError
from stalwart.bus.amqp import AmqpTransport
from stalwart.bus.outbox import OutboxTransport, spool_status
from stalwart.envelope import Envelope
from stalwart.errors import BrokerUnavailable, MessageTooLarge, TransportClosed

DOWN = "amqp://guest:guest@127.0.0.1:1/"


def _down_outbox(spool: Path, **options: float) -> OutboxTransport:
    inner = AmqpTransport(DOWN, exchange="never", connect_timeout=0.5)
    return OutboxTransport(inner, spool, backoff_initial=0.05, backoff_cap=0.2, **options)


async def _bodies(transport: OutboxTransport, queue: str, count: int) -> list[object]:
    """The bodies of the next ``count`` messages on ``queue``, acknowledged."""
    got = []
    async with asyncio.timeout(10.0):
        async for delivery in transport.consume(queue, 20):
            assert delivery.envelope is not None
            got.append(delivery.envelope.body)
            await delivery.ack()
            if len(got) == count:
                break
    return got


async def test_publishing_with_the_broker_down_spools_and_returns(tmp_path: Path) -> None:
    # Given an outbox whose broker cannot be reached
    outbox = _down_outbox(tmp_path / "outbox.db")
    await outbox.start()
    try:
        # When two batches are published
        started = time.monotonic()
        await outbox.publish([Envelope.new("a.b", n) for n in range(3)])
        await outbox.publish([Envelope.new("a.b", 3)])
        # Then publish returned promptly and all four wait durably in the spool
        assert time.monotonic() - started < 5.0
        status = await outbox.status()
        assert status.pending == 4 and status.bytes > 0 and status.oldest is not None
    finally:
        await outbox.close()
    # And the spool outlives the process's transport
    assert spool_status(tmp_path / "outbox.db").pending == 4


async def test_a_left_over_spool_is_forwarded_in_order_at_the_next_start(
    tmp_path: Path,
) -> None:
    # Given a spool left by a process that could not reach its broker
    spool = tmp_path / "outbox.db"
    first = _down_outbox(spool)
    await first.start()
    await first.publish([Envelope.new("jobs.run", n) for n in range(10)])
    await first.close()
    service = open_transport(f"sqlite:///{tmp_path}/bus.db")
    await service.start()
    await service.declare(QueueSpec("jobs", ("jobs.#",)))  # routed only once bound
    await service.close()
    # When a process starts an outbox over a reachable bus (the embedded one)
    inner = open_transport(f"sqlite:///{tmp_path}/bus.db")
    second = OutboxTransport(inner, spool, backoff_initial=0.05, backoff_cap=0.2)
    await second.start()
    try:
        await second.flush(timeout=10.0)
        # Then every spooled message arrives, in the order it was published
        assert await _bodies(second, "jobs", 10) == list(range(10))
        assert (await second.status()).pending == 0
    finally:
        await second.close()


async def test_a_spooled_row_that_no_longer_decodes_is_set_aside_not_lost(
    tmp_path: Path,
) -> None:
    # Given a spool of three messages whose middle row was damaged on disk
    spool = tmp_path / "outbox.db"
    first = _down_outbox(spool)
    await first.start()
    await first.publish([Envelope.new("jobs.run", n) for n in range(3)])
    await first.close()
    with sqlite3.connect(spool) as db:
        db.execute("UPDATE outbox SET data = ? WHERE seq = 2", (b"\x00not an envelope",))
    service = open_transport(f"sqlite:///{tmp_path}/bus.db")
    await service.start()
    await service.declare(QueueSpec("jobs", ("jobs.#",)))
    await service.close()
    # When the spool is forwarded to a reachable bus
    outbox = OutboxTransport(open_transport(f"sqlite:///{tmp_path}/bus.db"), spool)
    await outbox.start()
    try:
        await outbox.flush(timeout=10.0)
        # Then the others arrive, and the damaged row is kept aside with its error
        assert await _bodies(outbox, "jobs", 2) == [0, 2]
        status = await outbox.status()
        assert status.pending == 0 and status.quarantined == 1
    finally:
        await outbox.close()
    with sqlite3.connect(spool) as db:
        (data, error) = db.execute("SELECT data, error FROM quarantine").fetchone()
    assert data == b"\x00not an envelope" and error


async def test_bad_input_is_refused_and_nothing_is_spooled(tmp_path: Path) -> None:
    # Given an outbox with a 1 KiB limit and its broker down
    outbox = OutboxTransport(
        AmqpTransport(DOWN, connect_timeout=0.5), tmp_path / "o.db", max_message_size=1024
    )
    await outbox.start()
    try:
        # When a batch holds an oversized envelope
        with pytest.raises(MessageTooLarge):
            await outbox.publish([Envelope.new("a.b", 1), Envelope.new("a.b", "x" * 4096)])
        # Then nothing of it was spooled, and management calls say the broker is down
        assert await outbox.pending() == 0
        with pytest.raises(BrokerUnavailable):
            await outbox.queues()
    finally:
        await outbox.close()
    # And a closed outbox refuses clearly
    with pytest.raises(TransportClosed):
        await outbox.publish([Envelope.new("a.b", 1)])


async def test_flush_gives_up_after_its_timeout_when_the_broker_stays_down(
    tmp_path: Path,
) -> None:
    # Given one spooled message and no broker
    outbox = _down_outbox(tmp_path / "o.db")
    await outbox.start()
    try:
        await outbox.publish([Envelope.new("a.b", 1)])
        # When flushing for half a second
        # Then it raises BrokerUnavailable and the message is still spooled
        with pytest.raises(BrokerUnavailable, match="still spooled"):
            await outbox.flush(timeout=0.5)
        assert await outbox.pending() == 1
    finally:
        await outbox.close()


def test_only_one_process_forwards_a_spool_at_a_time(tmp_path: Path) -> None:
    # Given one spool opened twice (two processes on one host)
    a, b = Spool(tmp_path / "s.db"), Spool(tmp_path / "s.db")
    try:
        # When the first claims the forwarder lease
        assert a.claim("a", 5.0)
        # Then the second cannot until it is released or expires, and the owner can renew
        assert not b.claim("b", 5.0)
        assert a.claim("a", 5.0)
        a.release("a")
        assert b.claim("b", 0.0)
        assert a.claim("a", 5.0)  # b's zero-length lease has expired
    finally:
        a.close()
        b.close()


def test_an_unwritable_spool_is_a_clear_error(tmp_path: Path) -> None:
    # Given a spool path under a regular file (so no directory can be made)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # When it is opened
    # Then the error names the setting to fix
    with pytest.raises(SpoolError, match=r"bus\.outbox"):
        Spool(blocker / "outbox.db")


@pytest.mark.parametrize(("initial", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_nonsense_retry_bounds_are_refused_when_the_outbox_is_made(
    tmp_path: Path, initial: float, cap: float
) -> None:
    # Given retry bounds that cannot pace anything, When an outbox is made with them
    inner = AmqpTransport(DOWN, exchange="never", connect_timeout=0.5)
    with pytest.raises(ValueError, match="0 < initial <= cap"):
        OutboxTransport(inner, tmp_path / "spool.db", backoff_initial=initial, backoff_cap=cap)
    # Then it is refused at once, before anything was spooled
    assert not (tmp_path / "spool.db").exists()
