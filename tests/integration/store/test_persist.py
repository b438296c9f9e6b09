"""The persistence subscriber on the embedded bus, into SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from store_traffic import Traffic, count, put_raw, running

from stalwart.bus import Transport
from stalwart.envelope import Envelope
from stalwart.store import PERSIST_QUEUE, Persister, PersistOptions, Store
from stalwart.store._rows import Rows
from stalwart.store.queries import list_reports
from stalwart.store.schema import deliveries, messages
from waiting import until

_FAST = PersistOptions(batch_size=200, batch_interval=0.02, prefetch=400)


async def test_every_message_and_state_is_persisted_and_acked(
    store: Store, bus: Transport, traffic: Traffic
) -> None:
    # Given a running persister
    persister = Persister(bus, store, _FAST)
    await persister.declare()
    envs = [traffic.message(body={"i": i}) for i in range(300)]
    async with running(persister):
        # When 300 messages and their consumed states are published
        await bus.publish(envs)
        await bus.publish(
            [
                traffic.lifecycle(
                    *(traffic.step(e, "pipeline", s) for s in ("received", "consumed"))
                )
                for e in envs
            ]
        )

        # Then all are stored with their final state, and the queue drains
        async def done() -> bool:
            stats = await bus.queue_stats(PERSIST_QUEUE)
            return await count(store) == 600 and stats.ready == 0 and stats.inflight == 0

        await until(done, 30.0, "600 messages stored and the persist queue drained")
    async with store.engine.connect() as conn:
        states = (
            await conn.execute(select(deliveries.c.state, func.count()).group_by("state"))
        ).all()
    assert states == [("consumed", 300)]
    assert persister.stats.persisted == 600


async def test_a_redelivered_message_changes_nothing(
    store: Store, bus: Transport, traffic: Traffic
) -> None:
    # Given a message already persisted with a consumed state
    env = traffic.message()
    consumed = traffic.lifecycle(traffic.step(env, "qa", "consumed"))
    persister = Persister(bus, store, _FAST)
    await persister.declare()
    async with running(persister):
        await bus.publish([env, consumed])
        await until(lambda: _drained(bus), 30.0, "the persist queue to drain")
        # When the same message and an older state for it are published again
        await bus.publish([env, consumed, traffic.lifecycle(traffic.step(env, "qa", "received"))])
        await until(lambda: _drained(bus), 30.0, "the persist queue to drain again")
    # Then the message is stored once and its state did not move back
    assert await count(store, messages.c.id == env.id) == 1
    async with store.engine.connect() as conn:
        assert await conn.scalar(select(deliveries.c.state)) == "consumed"


async def _drained(bus: Transport) -> bool:
    stats = await bus.queue_stats(PERSIST_QUEUE)
    return stats.ready == 0 and stats.inflight == 0


async def test_an_invalid_system_body_is_stored_and_dead_lettered(
    store: Store, bus: Transport, traffic: Traffic
) -> None:
    # Given a running persister
    persister = Persister(bus, store, _FAST)
    await persister.declare()
    bad = Envelope.new("sys.lifecycle", {"transitions": "not a list"}, kind="LifecycleBatch")
    good = traffic.message()
    async with running(persister):
        # When a lifecycle message with a malformed body arrives next to a good one
        await bus.publish([bad, good])

        async def dead_lettered() -> bool:
            return len(await bus.dead_letters(PERSIST_QUEUE)) == 1 and await _drained(bus)

        await until(dead_lettered, 30.0, "the malformed body dead-lettered, the queue drained")
    # Then both are stored as messages and the bad one is dead-lettered with the reason
    assert await count(store) == 2
    (letter,) = await bus.dead_letters(PERSIST_QUEUE)
    assert letter.envelope is not None and letter.envelope.id == bad.id
    assert "LifecycleBatch" in letter.reason
    assert persister.stats.dead_lettered == 1


async def test_stopping_while_the_store_is_down_acks_nothing(
    bus: Transport, traffic: Traffic, postgres_url: str
) -> None:
    # Given a persister on a PostgreSQL database that does not exist
    broken = await Store.open(postgres_url + "_absent", migrate=False)
    persister = Persister(bus, broken, PersistOptions(batch_size=10, retry_initial=0.05))
    await persister.declare()
    try:
        async with running(persister):
            # When messages arrive and the writes keep failing
            await bus.publish([traffic.message() for _ in range(5)])
            await until(
                lambda: persister.stats.retries, 30.0, "two retries", accept=lambda n: n >= 2
            )
    finally:
        await broken.close()
    # Then nothing was acknowledged: all 5 are still on the bus for the next run
    stats = await bus.queue_stats(PERSIST_QUEUE)
    assert stats.ready + stats.inflight == 5
    assert persister.stats.persisted == 0


async def test_undecodable_bytes_are_reported_and_dead_lettered_without_stopping(
    store: Store, bus: Transport, traffic: Traffic
) -> None:
    # Given garbage written straight into the subscriber's queue by something else
    persister = Persister(bus, store, _FAST)
    await persister.declare()
    put_raw(bus, b"\xff not json")
    good = traffic.message()
    async with running(persister):
        # When it is consumed next to a good message
        await bus.publish([good])

        async def settled() -> bool:
            return len(await bus.dead_letters(PERSIST_QUEUE)) == 1 and await _drained(bus)

        await until(settled, 30.0, "the bytes dead-lettered, the queue drained")
    # Then the bytes are dead-lettered with the decode error, an error report says so,
    # and the good message is stored
    (letter,) = await bus.dead_letters(PERSIST_QUEUE)
    assert letter.raw == b"\xff not json" and "JSON" in letter.reason
    (report,) = await list_reports(store, level="error")
    assert report.source == "stalwart-persist" and "undecodable" in report.text
    assert await count(store, messages.c.id == good.id) == 1


async def test_while_a_batch_commits_the_next_one_grows_instead_of_queueing(
    store: Store, bus: Transport, traffic: Traffic, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a persister whose first commit is held until released
    released = asyncio.Event()
    sizes: list[int] = []
    write_rows = store.write_rows

    async def held(rows: Rows) -> None:
        sizes.append(len(rows.messages))
        if len(sizes) == 1:
            await released.wait()
        await write_rows(rows)

    monkeypatch.setattr(store, "write_rows", held)
    persister = Persister(bus, store, _FAST)
    await persister.declare()
    async with running(persister):
        await bus.publish([traffic.message()])
        await until(lambda: sizes, 30.0, "the first batch to be held")
        # When three groups arrive, many batch intervals apart, while it is held
        for _ in range(3):
            await bus.publish([traffic.message() for _ in range(20)])
            await asyncio.sleep(5 * _FAST.batch_interval)
        await asyncio.sleep(0.3)
        released.set()
        await until(
            lambda: persister.stats.persisted, 30.0, "61 persisted", accept=lambda n: n == 61
        )
    # Then they went in as one batch after it, not as one small batch per interval
    assert sizes == [1, 60]
