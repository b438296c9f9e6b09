"""Embedded-bus behaviour beyond the shared contract: bad data, bad input, limits."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stalwart.bus import Delivery, QueueSpec, open_transport
from stalwart.bus.sqlite import SqliteTransport
from stalwart.envelope import Envelope
from stalwart.errors import (
    BrokerUnavailable,
    ConfigError,
    DecodeError,
    TransportClosed,
    TransportError,
)


@pytest.fixture
def bus(embedded_bus: SqliteTransport) -> SqliteTransport:
    return embedded_bus


async def _next(deliveries: AsyncIterator[Delivery]) -> Delivery:
    return await asyncio.wait_for(anext(deliveries), 10.0)


async def test_an_undecodable_row_is_delivered_with_its_error_and_raw_bytes(
    bus: SqliteTransport,
) -> None:
    # Given garbage written straight into a queue by something else
    await bus.declare(QueueSpec("raw", ("raw.x",)))
    with sqlite3.connect(bus.path) as conn:
        conn.execute(
            "INSERT INTO messages (queue, raw, visible_at) VALUES ('raw', ?, ?)",
            (b"\xff not json", time.time()),
        )
    # When it is consumed
    delivery = await _next(bus.consume("raw", 5))
    # Then the delivery has no envelope, says why, and keeps the bytes
    assert delivery.envelope is None
    assert isinstance(delivery.error, DecodeError)
    assert delivery.raw == b"\xff not json"
    # And dead-lettering it keeps the bytes for inspection
    await delivery.dead("undecodable")
    (letter,) = await bus.dead_letters("raw")
    assert letter.envelope is None and letter.raw == b"\xff not json"
    assert letter.reason == "undecodable"


async def test_bindings_declared_by_another_connection_route_the_next_publish(
    bus: SqliteTransport, sqlite_bus_url: str
) -> None:
    # Given a publisher that has already routed with the old bindings
    await bus.declare(QueueSpec("early", ("b.x",)))
    await bus.publish([Envelope.new("b.x", 1)])
    # When another process (its own connection and cache) declares a new queue
    other = SqliteTransport(sqlite_bus_url)
    await other.start()
    await other.declare(QueueSpec("late", ("b.#",)))
    await bus.publish([Envelope.new("b.x", 2)])
    # Then the publisher's next message is routed to it too
    delivery = await _next(other.consume("late", 5))
    assert delivery.envelope is not None and delivery.envelope.body == 2
    assert (await bus.queue_stats("early")).ready == 2
    await other.close()


async def test_a_message_whose_consumers_keep_dying_is_dead_lettered(
    bus: SqliteTransport, sqlite_bus_url: str
) -> None:
    # Given a queue allowing two attempts and a short lease
    await bus.declare(QueueSpec("poison", ("p.x",), max_attempts=2, lease=0.3))
    await bus.publish([Envelope.new("p.x", "kills its consumer")])
    # When two consumers take it in turn and never settle (as if killed)
    for _ in range(2):
        stalled = SqliteTransport(sqlite_bus_url)
        await stalled.start()
        await _next(stalled.consume("poison", 1))
        stalled._state = "closed"  # vanish without releasing anything
        await stalled._writer.stop()  # type: ignore[union-attr]
        stalled._hub.close()  # a killed process's sockets close with it
        await asyncio.sleep(0.4)
    # Then the next claim moves it to the dead letters instead of delivering it again
    deliveries = bus.consume("poison", 1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(deliveries), 1.0)
    (letter,) = await bus.dead_letters("poison")
    assert "lease expired 2 times" in letter.reason
    assert letter.attempts == 2


async def test_settling_twice_or_after_close_fails_clearly(bus: SqliteTransport) -> None:
    # Given a settled delivery
    await bus.declare(QueueSpec("twice", ("t.x",)))
    await bus.publish([Envelope.new("t.x", 1), Envelope.new("t.x", 2)])
    deliveries = bus.consume("twice", 2)
    first, second = await _next(deliveries), await _next(deliveries)
    await first.ack()
    # When it is settled again, then an error says so
    with pytest.raises(TransportError, match="already settled"):
        await first.retry(None, "oops")
    # And after close, settling and publishing raise TransportClosed
    await bus.close()
    with pytest.raises(TransportClosed):
        await second.ack()
    with pytest.raises(TransportClosed):
        await bus.publish([Envelope.new("t.x", 3)])


async def test_ack_all_refuses_a_bad_batch_whole_and_settles_a_good_one_in_one_commit(
    bus: SqliteTransport,
) -> None:
    # Given two consumers of one queue, each holding a batch
    await bus.declare(QueueSpec("bulk", ("bulk.x",), lease=60.0))
    await bus.publish([Envelope.new("bulk.x", n) for n in range(6)])
    one, two = bus.consume_batches("bulk", 3), bus.consume_batches("bulk", 3)
    first = list(await asyncio.wait_for(anext(one), 10.0))
    second = list(await asyncio.wait_for(anext(two), 10.0))
    assert len(first) == len(second) == 3
    # When a batch names one delivery twice, or holds a delivery of another transport
    with pytest.raises(TransportError, match="twice"):
        await bus.ack_all([first[0], *first])
    stranger = _StrangerDelivery()
    with pytest.raises(TransportError, match="embedded bus only"):
        await bus.ack_all([first[0], stranger])
    # Then nothing of it was settled: the same deliveries can still be acked
    ops = bus._writer.ops  # type: ignore[union-attr]
    await bus.ack_all(first + second)
    # And both consumers' batches left the queue, six acks in one writer operation
    assert bus._writer.ops - ops == 1  # type: ignore[union-attr]
    stats = await bus.queue_stats("bulk")
    assert (stats.ready, stats.inflight) == (0, 0)
    # And a delivery acked already cannot be acked again, alone or in a batch
    with pytest.raises(TransportError, match="already settled"):
        await bus.ack_all(first[:1])


class _StrangerDelivery:
    """A delivery of some other transport."""

    queue, attempt, raw = "bulk", 1, b"{}"

    async def ack(self) -> None:
        raise AssertionError("never acked through the embedded bus")


async def test_ack_all_of_an_expired_lease_warns_that_it_may_run_again(
    bus: SqliteTransport, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a batch whose lease ran out and was taken by another consumer
    await bus.declare(QueueSpec("late", ("late.x",), lease=0.2))
    await bus.publish([Envelope.new("late.x", 1)])
    (stale,) = await asyncio.wait_for(anext(bus.consume_batches("late", 1)), 10.0)
    await asyncio.sleep(0.4)
    (again,) = await asyncio.wait_for(anext(bus.consume_batches("late", 1)), 10.0)
    assert again.attempt == 2
    # When the first consumer acks it late
    with caplog.at_level("WARNING", logger="stalwart.bus.sqlite"):
        await bus.ack_all([stale])
    # Then a warning says it may be processed again, and the new holder's ack still counts
    assert "lease expired" in caplog.text
    await bus.ack_all([again])
    stats = await bus.queue_stats("late")
    assert (stats.ready, stats.inflight) == (0, 0)


async def test_bad_input_is_refused_with_an_actionable_error(bus: SqliteTransport) -> None:
    # Consuming a queue nobody declared
    with pytest.raises(TransportError, match="not declared"):
        await _next(bus.consume("nobody", 1))
    # Dead-letter keys that are not ours
    await bus.declare(QueueSpec("keys", ("k.x",)))
    with pytest.raises(TransportError, match="dlq list"):
        await bus.purge_dead("keys", ["not-a-key"])
    # URLs and options that cannot work
    with pytest.raises(ConfigError, match="sqlite:///"):
        open_transport("sqlite://bus.db")
    with pytest.raises(ConfigError, match="needs a file"):
        open_transport("sqlite:///:memory:")
    with pytest.raises(ConfigError, match="durability"):
        SqliteTransport("sqlite:///x.db", durability="fast")  # type: ignore[arg-type]


async def test_normal_durability_works_and_creates_missing_directories(tmp_path: Path) -> None:
    # Given a bus URL under directories that do not exist, at the weaker durability
    url = f"sqlite:///{tmp_path}/a/b/c/bus.db"
    bus = open_transport(url, durability="normal", exchange="ignored")
    # When it starts and carries a message
    await bus.start()
    await bus.declare(QueueSpec("n", ("n.x",)))
    await bus.publish([Envelope.new("n.x", "fast")])
    delivery = await _next(bus.consume("n", 1))
    await delivery.ack()
    await bus.close()
    # Then the file exists in WAL mode with synchronous=NORMAL used for the session
    assert (tmp_path / "a/b/c/bus.db").exists()
    with sqlite3.connect(tmp_path / "a/b/c/bus.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert delivery.envelope is not None and delivery.envelope.body == "fast"


async def test_an_unusable_bus_location_fails_fast_with_what_to_do(tmp_path: Path) -> None:
    # Given a bus URL whose directory is in fact a file
    (tmp_path / "afile").write_text("not a directory")
    bus = SqliteTransport(f"sqlite:///{tmp_path}/afile/bus.db")
    # When it starts, then it fails at once with BrokerUnavailable naming the path
    with pytest.raises(BrokerUnavailable, match="afile"):
        await bus.start()


async def test_a_burst_of_acks_costs_one_writer_operation(bus: SqliteTransport) -> None:
    # Given 50 deliveries held by one consumer
    await bus.declare(QueueSpec("burst", ("b.x",)))
    await bus.publish([Envelope.new("b.x", n) for n in range(50)])
    deliveries = bus.consume("burst", 50)
    held = [await _next(deliveries) for _ in range(50)]
    writer = bus._writer
    assert writer is not None
    before = writer.ops
    # When they are all acked in the same loop turn
    await asyncio.gather(*(d.ack() for d in held))
    # Then one operation deleted them all, and the queue is empty
    assert writer.ops - before <= 2  # the acks, plus possibly the consumer's next claim
    stats = await bus.queue_stats("burst")
    assert (stats.ready, stats.inflight) == (0, 0)
