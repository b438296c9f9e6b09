"""The outbox's drain pipeline: several batches' confirms in flight, in order, and a
row removed from the spool only once the broker confirmed it (no broker needed:
the inner transport is a stand-in whose confirms the test controls)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from pathlib import Path

from stalwart.bus import Encoded
from stalwart.bus.outbox import OutboxTransport, destination
from stalwart.bus.outbox._spool import Spool
from stalwart.envelope import Envelope, encode
from stalwart.errors import BrokerUnavailable

URL = "amqp://guest:guest@broker.invalid:5672/"


class _Broker:
    """A pipelining transport that records what it is sent and confirms each batch
    only when told; the batches listed in ``failing`` fail their first confirm."""

    url = URL
    connected = True

    def __init__(self, failing: set[int] | None = None) -> None:
        self.events: list[tuple[str, int]] = []  # ("sent" | "confirmed", batch number)
        self.received: list[str] = []  # message ids in arrival order
        self.spooled_at_confirm: list[int] = []  # spool rows left when a confirm came
        self.spooled_at_failure: list[int] = []  # ... when a confirm failed
        self.failing = failing or set()
        self.spool: Spool | None = None
        self._batches = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish_encoded(self, batch: Sequence[Encoded]) -> None:
        await (await self.send_encoded(batch))

    async def send_encoded(self, batch: Sequence[Encoded]) -> Awaitable[None]:
        self._batches += 1
        number = self._batches
        self.events.append(("sent", number))
        self.received.extend(row.id for row in batch)
        return self._confirm(number)

    async def _confirm(self, number: int) -> None:
        await asyncio.sleep(0.01)  # a broker round trip: the next batch is sent meanwhile
        assert self.spool is not None
        if number in self.failing:
            self.failing.discard(number)
            self.spooled_at_failure.append(self.spool.pending())
            raise BrokerUnavailable("lost the connection")
        self.spooled_at_confirm.append(self.spool.pending())
        self.events.append(("confirmed", number))


def _spooled(path: Path, count: int) -> list[str]:
    """``count`` envelopes spooled for ``URL``; their ids, in order."""
    envelopes = [Envelope.new("jobs.run", n) for n in range(count)]
    spool = Spool(path, bus=destination(URL))
    spool.append([(e.id, e.topic, encode(e)) for e in envelopes])
    spool.close()
    return [e.id for e in envelopes]


async def _drain(path: Path, broker: _Broker) -> int:
    outbox = OutboxTransport(
        broker,  # type: ignore[arg-type]
        path,
        forward=False,
        batch_size=10,
        backoff_initial=0.01,
        backoff_cap=0.02,
    )
    await outbox.start()
    broker.spool = Spool(path, bus=destination(URL))
    try:
        forwarded = await outbox.flush(timeout=10.0)
        assert (await outbox.status()).pending == 0
        return forwarded
    finally:
        await outbox.close()
        broker.spool.close()


async def test_the_drain_sends_the_next_batches_while_confirms_are_awaited(
    tmp_path: Path,
) -> None:
    # Given 100 spooled messages, forwarded in batches of 10
    ids = _spooled(tmp_path / "outbox.db", 100)
    broker = _Broker()
    # When the outbox drains them
    assert await _drain(tmp_path / "outbox.db", broker) == 100
    # Then they arrived once each, in order
    assert broker.received == ids
    # And several batches were on the wire before the first was confirmed
    assert broker.events[:3] == [("sent", 1), ("sent", 2), ("sent", 3)]
    # And nothing left the spool before its confirm: all 100 were there at the first
    assert broker.spooled_at_confirm[0] == 100


async def test_a_failed_confirm_sends_the_unconfirmed_rows_again_in_order(
    tmp_path: Path,
) -> None:
    # Given 60 spooled messages, and a broker that fails the third batch's confirm once
    ids = _spooled(tmp_path / "outbox.db", 60)
    broker = _Broker(failing={3})
    # When the outbox drains them
    await _drain(tmp_path / "outbox.db", broker)
    # Then nothing is lost: every message arrived, first copies in order
    assert list(dict.fromkeys(broker.received)) == ids
    # And the copies sent again start at the batch whose confirm failed
    assert broker.received[len(ids) : len(ids) + 10] == ids[20:30]
    # And when that confirm failed, its rows and all after them were still spooled
    assert broker.spooled_at_failure and broker.spooled_at_failure[0] >= 40


def test_appends_wait_for_the_disk_and_removals_do_not(tmp_path: Path) -> None:
    # Given a spool at full durability, its connection's setting read after each write
    spool = Spool(tmp_path / "outbox.db", bus=destination(URL))

    def setting() -> str:
        return {1: "NORMAL", 2: "FULL"}[spool._db.execute("PRAGMA synchronous").fetchone()[0]]

    try:
        # When rows are appended, forwarded rows removed, and rows appended again
        spool.append([("a", "jobs.run", b"{}")])
        after_append = setting()
        [row] = spool.head(10)
        spool.mark_forwarded(row.seq)
        after_removal = setting()
        spool.append([("b", "jobs.run", b"{}")])
        # Then every append is fsynced, a removal (only ever re-sends if undone) is not
        assert (after_append, after_removal, setting()) == ("FULL", "NORMAL", "FULL")
    finally:
        spool.close()
