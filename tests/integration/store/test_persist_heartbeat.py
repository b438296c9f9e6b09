"""The persister's heartbeats: proof of life with a processed count, withheld while stuck."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from store_traffic import Traffic, running

from stalwart.bus import QueueSpec, Transport
from stalwart.messages import Heartbeat, heartbeat_topic
from stalwart.store import PERSIST_QUEUE, Persister, PersistOptions, Store
from stalwart.store._rows import Rows
from waiting import until


@dataclass
class Beats:
    """Heartbeats of the persister as they arrive, with their arrival times."""

    seen: list[tuple[float, Heartbeat]] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.seen[-1][1].processed if self.seen else 0

    def silent_for(self) -> float:
        return time.monotonic() - self.seen[-1][0] if self.seen else 0.0


@pytest.fixture
def store_url(sqlite_store_url: str) -> str:
    """SQLite only: the store whose writers a frozen persister would block."""
    return sqlite_store_url


@pytest.fixture
async def beats(bus: Transport, unique: str) -> AsyncIterator[Beats]:
    """A tap on the persister's heartbeat topic."""
    queue = f"beats-{unique}"
    await bus.declare(QueueSpec(queue, (heartbeat_topic(PERSIST_QUEUE),), ephemeral=True))
    collected = Beats()

    async def collect() -> None:
        async for delivery in bus.consume(queue, prefetch=100):
            if delivery.envelope is not None:
                beat = Heartbeat.model_validate(delivery.envelope.body)
                collected.seen.append((time.monotonic(), beat))
            await delivery.ack()

    task = asyncio.create_task(collect())
    yield collected
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_the_persister_beats_with_a_growing_processed_count(
    store: Store, bus: Transport, beats: Beats, traffic: Traffic
) -> None:
    # Given a persister that beats every 0.2 s
    options = PersistOptions(batch_size=50, batch_interval=0.02, prefetch=100, heartbeat=0.2)
    persister = Persister(bus, store, options, site="here")
    await persister.declare()
    async with running(persister):
        await until(lambda: len(beats.seen), 30.0, "a first heartbeat", accept=lambda n: n > 0)
        first = beats.processed
        # When 100 messages are published and stored
        await bus.publish([traffic.message(body={"i": i}) for i in range(100)])
        # Then a later heartbeat reports at least 100 more envelopes processed
        await until(
            lambda: beats.processed, 30.0, "100 more processed", accept=lambda n: n >= first + 100
        )
        # When 100 more follow
        await bus.publish([traffic.message(body={"i": i}) for i in range(100, 200)])
        # Then the count grows again, and never went down
        await until(
            lambda: beats.processed, 30.0, "200 more processed", accept=lambda n: n >= first + 200
        )
    counts = [beat.processed for _, beat in beats.seen]
    assert counts == sorted(counts)
    beat = beats.seen[0][1]
    assert (beat.service, beat.site, beat.pid, beat.interval) == (
        PERSIST_QUEUE,
        "here",
        os.getpid(),
        0.2,
    )
    # And a last one, sent as it stopped, says so
    await until(lambda: beats.seen[-1][1].stopping, 10.0, "a heartbeat saying it stopped")


async def test_heartbeats_stop_while_a_write_is_stuck_and_resume_after(
    store: Store, bus: Transport, beats: Beats, traffic: Traffic
) -> None:
    # Given a beating persister whose store writes hang while `flowing` is clear
    options = PersistOptions(batch_interval=0.02, heartbeat=0.1, stall_after=0.5)
    persister = Persister(bus, store, options)
    write_rows = store.write_rows
    flowing = asyncio.Event()
    flowing.set()

    async def gated(rows: Rows) -> None:
        await flowing.wait()
        await write_rows(rows)

    store.write_rows = gated  # type: ignore[method-assign]
    await persister.declare()
    async with running(persister):
        await bus.publish([traffic.message()])
        await until(lambda: beats.processed, 30.0, "a beat with some processed", accept=bool)
        # When the next write hangs
        flowing.clear()
        await bus.publish([traffic.message()])
        # Then the heartbeats stop (ten intervals of silence) while the persister is unhealthy
        await until(beats.silent_for, 30.0, "1 s without a beat", accept=lambda s: s > 1.0)
        assert not persister.healthy()
        before = beats.processed
        # When the write goes through
        flowing.set()
        # Then the heartbeats resume and count what it stored
        await until(lambda: beats.processed, 30.0, "more processed", accept=lambda n: n > before)
