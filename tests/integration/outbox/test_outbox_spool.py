"""The outbox on its own: spooling when the broker is away, forwarding at the
next start, ordering, bad input and the forwarder lease (no broker needed:
the inner transports are a real unreachable amqp one and the embedded bus)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from stalwart.bus import QueueSpec, open_transport
from stalwart.bus.amqp import AmqpTransport
from stalwart.bus.outbox import OutboxTransport, destination, spool_status
from stalwart.bus.outbox._spool import Spool, SpoolError
from stalwart.envelope import Envelope, encode
from stalwart.errors import BrokerUnavailable, MessageTooLarge, TransportClosed

DOWN = "amqp://guest:guest@127.0.0.1:1/"


def _down_outbox(spool: Path, **options: float) -> OutboxTransport:
    inner = AmqpTransport(DOWN, exchange="never", connect_timeout=0.5)
    return OutboxTransport(inner, spool, backoff_initial=0.05, backoff_cap=0.2, **options)


def _blocked_bus(tmp_path: Path) -> tuple[str, Path]:
    """An embedded bus that cannot be opened (its directory is a file) until the
    returned blocker is removed: an outage of the embedded bus."""
    blocker = tmp_path / "bus-dir"
    blocker.write_text("in the way")
    return f"sqlite:///{blocker}/bus.db", blocker


async def _declare(url: str, queue: str = "jobs") -> None:
    service = open_transport(url)
    await service.start()
    await service.declare(QueueSpec(queue, (f"{queue}.#",)))  # routed only once bound
    await service.close()


async def _spooled_for(url: str, spool: Path, count: int) -> None:
    """``count`` messages spooled by an outbox whose bus ``url`` is down."""
    outbox = OutboxTransport(open_transport(url), spool, backoff_initial=0.05, backoff_cap=0.2)
    await outbox.start()
    await outbox.publish([Envelope.new("jobs.run", n) for n in range(count)])
    await outbox.close()


async def _reachable(tmp_path: Path, spool: Path) -> OutboxTransport:
    """A started outbox on ``spool`` over an embedded bus with a ``jobs`` queue."""
    url = f"sqlite:///{tmp_path}/bus.db"
    await _declare(url)
    outbox = OutboxTransport(open_transport(url), spool)
    await outbox.start()
    return outbox


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
    # And the spool outlives the process's transport, recorded for its bus (no password)
    [left] = spool_status(tmp_path / "outbox.db")
    assert left.pending == 4 and left.bus == "amqp://guest:***@127.0.0.1:1/"


async def test_a_left_over_spool_is_forwarded_in_order_at_the_next_start(
    tmp_path: Path,
) -> None:
    # Given a spool left by a process that could not reach its (embedded) bus
    spool = tmp_path / "outbox.db"
    url, blocker = _blocked_bus(tmp_path)
    await _spooled_for(url, spool, 10)
    blocker.unlink()
    await _declare(url)
    # When a process starts an outbox over that bus, now reachable
    second = OutboxTransport(open_transport(url), spool, backoff_initial=0.05, backoff_cap=0.2)
    await second.start()
    try:
        await second.flush(timeout=10.0)
        # Then every spooled message arrives, in the order it was published
        assert await _bodies(second, "jobs", 10) == list(range(10))
        assert (await second.status()).pending == 0
    finally:
        await second.close()


async def test_a_failed_removal_of_forwarded_rows_is_tried_again_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given ten spooled messages, forwarded in batches of three
    spool = tmp_path / "outbox.db"
    url, blocker = _blocked_bus(tmp_path)
    await _spooled_for(url, spool, 10)
    blocker.unlink()
    await _declare(url)
    # When removing the first forwarded batch from the spool fails
    mark = Spool.mark_forwarded
    calls: list[int] = []

    def failing_once(self: Spool, last: int) -> None:
        calls.append(last)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        mark(self, last)

    monkeypatch.setattr(Spool, "mark_forwarded", failing_once)
    outbox = OutboxTransport(open_transport(url), spool, batch_size=3)
    await outbox.start()
    try:
        await outbox.flush(timeout=10.0)
        # Then every message arrives once, in order: the confirmed rows stayed in the
        # spool and their removal was tried again with the next, not sent again
        got: list[object] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                async for delivery in outbox.consume("jobs", 20):
                    assert delivery.envelope is not None
                    got.append(delivery.envelope.body)
                    await delivery.ack()
        assert got == list(range(10))
        assert len(calls) > 1 and calls[1] >= calls[0]
        assert (await outbox.status()).pending == 0
    finally:
        await outbox.close()


async def test_messages_for_one_bus_are_never_forwarded_to_another(tmp_path: Path) -> None:
    # Given messages spooled for a broker that is down, in the shared spool file
    spool = tmp_path / "outbox.db"
    await _spooled_for(DOWN, spool, 3)
    # When an outbox on another, reachable bus starts on the same file and flushes
    other = await _reachable(tmp_path, spool)
    try:
        assert await other.flush(timeout=5.0) == 0
        # Then nothing reached that bus, and the messages still wait for their own
        assert (await other.queue_stats("jobs")).ready == 0
    finally:
        await other.close()
    [left] = spool_status(spool)
    assert (left.bus, left.pending) == (destination(DOWN), 3)


def _legacy_spool(path: Path, count: int) -> None:
    """A spool as an older stalwart wrote it: no record of the bus."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, "
            "topic TEXT NOT NULL, spooled_at REAL NOT NULL, data BLOB NOT NULL)"
        )
        for n in range(count):
            env = Envelope.new("jobs.run", n)
            db.execute(
                "INSERT INTO outbox (id, topic, spooled_at, data) VALUES (?, ?, ?, ?)",
                (env.id, env.topic, time.time(), encode(env)),
            )


async def test_an_older_spool_is_kept_until_adopted_then_forwarded(tmp_path: Path) -> None:
    # Given a spool of an older version, whose rows do not say which bus they were for
    spool = tmp_path / "outbox.db"
    _legacy_spool(spool, 2)
    outbox = await _reachable(tmp_path, spool)
    try:
        # When an outbox opens it (migrating it), Then it forwards none of them by itself
        assert await outbox.flush(timeout=5.0) == 0
        [unknown] = spool_status(spool)
        assert (unknown.bus, unknown.pending) == (None, 2)
        # When the operator adopts them for this bus, Then they are forwarded, in order
        assert await outbox.adopt() == 2
        assert await outbox.flush(timeout=10.0) == 2
        assert await _bodies(outbox, "jobs", 2) == [0, 1]
    finally:
        await outbox.close()
    assert spool_status(spool) == []


async def test_a_spooled_row_that_no_longer_decodes_is_set_aside_not_lost(
    tmp_path: Path,
) -> None:
    # Given a spool of three messages whose middle row was damaged on disk
    spool = tmp_path / "outbox.db"
    url, blocker = _blocked_bus(tmp_path)
    await _spooled_for(url, spool, 3)
    with sqlite3.connect(spool) as db:
        db.execute("UPDATE outbox SET data = ? WHERE seq = 2", (b"\x00not an envelope",))
    blocker.unlink()
    await _declare(url)
    # When the spool is forwarded to its bus, back again
    outbox = OutboxTransport(open_transport(url), spool)
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
        (data, error, bus) = db.execute("SELECT data, error, bus FROM quarantine").fetchone()
    assert data == b"\x00not an envelope" and error and bus == destination(url)


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
    # Given one spool opened twice for one bus (two processes on one host)
    a, b = Spool(tmp_path / "s.db", bus="x"), Spool(tmp_path / "s.db", bus="x")
    other = Spool(tmp_path / "s.db", bus="y")
    try:
        # (a process forwarding another bus's messages does not wait for them)
        assert other.claim("c", 5.0)
        # When the first claims the forwarder lease
        assert a.claim("a", 5.0)
        # Then the second cannot until it is released or expires, and the owner can renew
        assert not b.claim("b", 5.0)
        assert a.claim("a", 5.0)
        a.release("a")
        assert b.claim("b", 0.0)
        assert a.claim("a", 5.0)  # b's zero-length lease has expired
    finally:
        for spool in (a, b, other):
            spool.close()


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
