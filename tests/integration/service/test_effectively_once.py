"""Effectively-once under faults: duplicates claimed once, store outages end in a
state with a reason, final states durable before the ack, fenced instances idle.

Each test counts effects in the store (a table without a unique key on the
message id, so a duplicate effect is a second row) and reads the life cycle
published on ``sys.lifecycle``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from stalwart.bus import Delivery, Transport
from stalwart.config import Settings
from stalwart.envelope import DeliveryState, Envelope, encode
from stalwart.messages import LIFECYCLE_TOPIC, LifecycleBatch
from stalwart.service import Context, Service, ServiceRunner
from stalwart.store.engine import make_engine
from tcp_proxy import TcpProxy

S = DeliveryState
_effects = sa.Table(
    "test_effects",
    sa.MetaData(),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(64), nullable=False),
)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, settings: Settings) -> str:
    if request.param == "sqlite":
        return settings.store.url
    return str(request.getfixturevalue("postgres_url"))


def with_store(settings: Settings, url: str) -> Settings:
    return settings.model_copy(
        update={"store": settings.store.model_copy(update={"url": url})}, deep=True
    )


async def effects(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.select(_effects.c.message_id))).scalars())
    finally:
        await engine.dispose()


async def create_effects(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_effects.metadata.create_all)
    finally:
        await engine.dispose()


def effect_service(name: str, runs: list[str], *, hold: float = 0.0, **options: Any) -> Service:
    """An idempotent handler that writes one effect row per run, in ctx.transaction()."""
    svc = Service(name, **options)

    @svc.handler("work.item", idempotent=True)
    async def work(ctx: Context, body: Any) -> None:
        runs.append(ctx.envelope.id)
        await asyncio.sleep(hold)
        async with ctx.transaction() as tx:
            await tx.execute(_effects.insert().values(message_id=ctx.envelope.id))
        if isinstance(body, dict) and body.get("fail_after_commit") and len(runs) == 1:
            raise RuntimeError("failed after its effect committed")

    return svc


async def proxied_store(settings: Settings, postgres_url: str) -> tuple[TcpProxy, Settings]:
    """The effects table made, and settings whose store is reached through a started proxy."""
    await create_effects(postgres_url)
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    return proxy, with_store(settings, proxy.url(postgres_url))


@pytest.fixture
async def started() -> AsyncIterator[list[ServiceRunner]]:
    runners: list[ServiceRunner] = []
    yield runners
    for runner in runners:
        await runner.stop(grace=1.0)


async def start(runners: list[ServiceRunner], *made: ServiceRunner) -> None:
    for runner in made:
        runners.append(runner)
        await runner.start()


async def test_copies_of_one_id_delivered_together_run_the_handler_once(
    bus: Transport, settings: Settings, store_url: str, unique: str, lifecycle, started
) -> None:
    # Given two instances of an idempotent service and a slow handler
    settings = with_store(settings, store_url)
    await create_effects(store_url)
    runs: list[str] = []
    svc = effect_service(f"once-{unique}", runs, hold=0.3)
    await start(started, ServiceRunner(svc, bus, settings), ServiceRunner(svc, bus, settings))
    # When the same envelope is published four times back to back
    envelope = Envelope.new("work.item", {"n": 1})
    await bus.publish([envelope] * 4)
    # Then every copy ends consumed, but the handler ran once and the effect is stored once
    await lifecycle.wait(envelope.id, svc.name, S.CONSUMED, timeout=20.0, count=4)
    assert runs == [envelope.id]
    assert await effects(store_url) == [envelope.id]
    reasons = [r for s, r in lifecycle.states[(envelope.id, svc.name)] if s is S.CONSUMED]
    assert reasons.count("duplicate: already processed") == 3


async def test_a_committed_effect_is_not_applied_again_after_a_failure(
    bus: Transport, settings: Settings, store_url: str, unique: str, lifecycle, started
) -> None:
    # Given a handler that commits its effect and then fails
    settings = with_store(settings, store_url)
    await create_effects(store_url)
    runs: list[str] = []
    svc = effect_service(f"commit-{unique}", runs)
    await start(started, ServiceRunner(svc, bus, settings))
    envelope = Envelope.new("work.item", {"fail_after_commit": True})
    await bus.publish([envelope])
    # Then the retry finds the claim done: acked as a duplicate, not run again
    await lifecycle.wait(envelope.id, svc.name, S.CONSUMED)
    assert lifecycle.of(envelope.id, svc.name).count(S.FAILED) == 1
    assert runs == [envelope.id]
    assert await effects(store_url) == [envelope.id]


async def test_a_store_outage_retries_with_a_reason_and_crashes_no_task(
    bus: Transport,
    settings: Settings,
    postgres_url: str,
    unique: str,
    lifecycle,
    started,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an idempotent service whose store is reached through a proxy
    proxy, settings = await proxied_store(settings, postgres_url)
    runs: list[str] = []
    svc = effect_service(f"outage-{unique}", runs, max_attempts=2)
    await start(started, ServiceRunner(svc, bus, settings))
    try:
        # When the store goes away and messages arrive
        proxy.cut()
        sent = [Envelope.new("work.item", {"n": n}) for n in range(5)]
        await bus.publish(sent)
        # Then each attempt fails with "store unavailable" (no crashed handler task),
        # more often than max_attempts allows, without the message dying of it
        for envelope in sent:
            await lifecycle.wait(envelope.id, svc.name, S.FAILED, timeout=20.0, count=3)
            assert "store unavailable" in lifecycle.reason(envelope.id, svc.name, S.FAILED)
        # And once the store is back every message is consumed, each effect stored once
        proxy.restore()
        for envelope in sent:
            await lifecycle.wait(envelope.id, svc.name, S.CONSUMED, timeout=30)
            assert S.DEAD not in lifecycle.of(envelope.id, svc.name)
    finally:
        await proxy.close()
    assert sorted(await effects(postgres_url)) == sorted(e.id for e in sent)
    assert not [r for r in caplog.records if "task crashed" in r.getMessage()]


async def test_every_handler_stopped_by_a_store_restart_goes_on_within_seconds(
    bus: Transport, settings: Settings, postgres_url: str, unique: str, lifecycle, started
) -> None:
    # Given eight concurrent idempotent handlers under the default retry pace
    # (0.5 s doubling to 60 s), their store reached through a proxy
    proxy, settings = await proxied_store(settings, postgres_url)
    pace = settings.bus.model_copy(update={"retry_initial": 0.5, "retry_max": 60.0})
    settings = settings.model_copy(update={"bus": pace})
    svc = effect_service(f"restart-{unique}", [], concurrency=8, max_attempts=3)
    await start(started, ServiceRunner(svc, bus, settings))
    try:
        # When the store goes away while eight messages arrive (each fails, some twice)
        proxy.cut()
        sent = [Envelope.new("work.item", {"n": n}) for n in range(8)]
        await bus.publish(sent)
        for envelope in sent:
            await lifecycle.wait(envelope.id, svc.name, S.FAILED, timeout=20.0)
        await asyncio.sleep(2.0)
        # and comes back
        proxy.restore()
        began = time.monotonic()
        # Then every message is consumed within seconds, not the minute the
        # failures' shared pace would otherwise have grown to
        for envelope in sent:
            await lifecycle.wait(envelope.id, svc.name, S.CONSUMED, timeout=30.0)
        assert time.monotonic() - began < 12.0
    finally:
        await proxy.close()


class _Spy:
    """A transport wrapper that checks, at each ack, that the final state was published."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.url = inner.url
        self.published: set[tuple[str, S]] = set()
        self.acked_before_recorded: list[str] = []
        self.acks = 0
        self.expected = 200
        self.done = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.inner.connected

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def publish(self, batch: Sequence[Envelope], *, sync: bool = True) -> None:
        await self.inner.publish(batch, sync=sync)
        for envelope in batch:
            if envelope.topic == LIFECYCLE_TOPIC:
                for t in LifecycleBatch.model_validate(envelope.body).transitions:
                    self.published.add((t.message_id, t.state))

    async def consume(self, queue: str, prefetch: int) -> AsyncIterator[Delivery]:
        async for delivery in self.inner.consume(queue, prefetch):
            yield self._watched(delivery)

    def _watched(self, delivery: Delivery) -> Delivery:
        return _Watched(self, delivery)  # type: ignore[return-value]

    def acked(self, envelope: Envelope | None) -> None:
        if envelope is not None and (envelope.id, S.CONSUMED) not in self.published:
            self.acked_before_recorded.append(envelope.id)
        self.acks += 1
        if self.acks >= self.expected:
            self.done.set()


class _Watched:
    """A delivery whose ack reports to the spy first."""

    def __init__(self, spy: _Spy, inner: Delivery) -> None:
        self._spy, self._inner = spy, inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def ack(self) -> None:
        self._spy.acked(self._inner.envelope)
        await self._inner.ack()


async def test_the_final_state_is_durable_before_the_ack(
    bus: Transport, settings: Settings, unique: str, started
) -> None:
    # Given a service on a transport that notes the order of publishes and acks
    spy = _Spy(bus)
    svc = Service(f"durable-{unique}", concurrency=8)

    @svc.handler("work.item")
    async def work(ctx: Context, body: Any) -> None:
        await asyncio.sleep(0.001)

    await start(started, ServiceRunner(svc, spy, settings))  # type: ignore[arg-type]
    # When 200 messages are handled
    await bus.publish([Envelope.new("work.item", {"n": n}) for n in range(200)])
    await asyncio.wait_for(spy.done.wait(), 20)
    # Then every ack came after the message's `consumed` was published
    assert spy.acks == 200
    assert spy.acked_before_recorded == []


async def test_a_fenced_instance_starts_no_handler_and_gives_its_deliveries_back(
    bus: Transport, settings: Settings, unique: str, lifecycle, started
) -> None:
    # Given an instance fenced out (its HA lease lost) and one that is not
    runs: list[str] = []
    fenced = asyncio.Event()
    fenced.set()
    svc = Service(f"fenced-{unique}")

    @svc.handler("work.item")
    async def work(ctx: Context, body: Any) -> None:
        runs.append(ctx.instance)

    async def guard() -> bool:
        return not fenced.is_set()

    deposed = ServiceRunner(svc, bus, settings, ack_guard=guard)
    await start(started, deposed)
    # When messages arrive while only the deposed one consumes
    sent = [Envelope.new("work.item", {"n": n}) for n in range(5)]
    await bus.publish(sent)
    await asyncio.sleep(0.5)
    # Then it ran nothing and settled nothing: the messages are still there
    assert runs == []
    assert (await bus.queue_stats(svc.name)).dead == 0
    # And the active one takes them all at their first attempt
    active = ServiceRunner(svc, bus, settings)
    await start(started, active)
    for envelope in sent:
        await lifecycle.wait(envelope.id, svc.name, S.CONSUMED)
    assert runs == [active.instance] * 5
    assert all(S.FAILED not in lifecycle.of(e.id, svc.name) for e in sent)


async def test_a_replica_deposed_while_its_handler_runs_does_not_settle(
    bus: Transport, settings: Settings, unique: str, lifecycle, started
) -> None:
    # Given an active instance whose handler is running when its lease is lost
    fenced, entered = asyncio.Event(), asyncio.Event()
    runs: list[str] = []
    svc = Service(f"deposed-{unique}", max_attempts=1)

    @svc.handler("work.item")
    async def work(ctx: Context, body: Any) -> None:
        runs.append(ctx.instance)
        if len(runs) == 1:
            entered.set()
            await fenced.wait()
            raise RuntimeError("would dead-letter it if it settled")

    async def guard() -> bool:
        return not fenced.is_set()

    first = ServiceRunner(svc, bus, settings, ack_guard=guard)
    await start(started, first)
    envelope = Envelope.new("work.item", {})
    await bus.publish([envelope])
    await asyncio.wait_for(entered.wait(), 10)
    # When it is fenced out and its handler then fails
    fenced.set()
    successor = ServiceRunner(svc, bus, settings)
    await start(started, successor)
    # Then it neither retried nor dead-lettered: the successor consumes the message
    await lifecycle.wait(envelope.id, svc.name, S.CONSUMED)
    assert S.DEAD not in lifecycle.of(envelope.id, svc.name)
    assert (await bus.queue_stats(svc.name)).dead == 0
    assert runs == [first.instance, successor.instance]


async def test_a_foreign_envelope_over_the_size_limit_is_rejected_on_consume(
    bus: Transport, settings: Settings, unique: str, lifecycle, started
) -> None:
    # Given a service, and a foreign publisher that skips the size check
    runs: list[str] = []
    svc = Service(f"size-{unique}")

    @svc.handler("work.item")
    async def work(ctx: Context, body: Any) -> None:
        runs.append(ctx.envelope.id)

    await start(started, ServiceRunner(svc, bus, settings))
    big = Envelope.new("work.item", {"blob": "x" * (settings.bus.max_message_size + 10)})
    raw = encode(big, max_size=10 * settings.bus.max_message_size)
    with sqlite3.connect(bus.path) as conn:  # type: ignore[attr-defined]
        conn.execute(
            "INSERT INTO messages (queue, raw, visible_at) VALUES (?, ?, ?)",
            (svc.name, raw, time.time()),
        )
    # Then it is rejected with the size in the reason, and never reaches the handler
    await lifecycle.wait(big.id, svc.name, S.REJECTED)
    assert "too large" in lifecycle.reason(big.id, svc.name, S.REJECTED)
    assert runs == []
    assert [letter.raw for letter in await bus.dead_letters(svc.name)] == [raw]


async def test_done_claims_are_pruned_after_the_retention_only(
    bus: Transport, store_url: str
) -> None:
    from stalwart.service.claims import Claims, ClaimState

    claims = Claims(store_url, "prune-test")
    await claims.open()
    try:
        for message_id in ("old", "open"):
            assert (await claims.claim_many([(message_id, "me/1")], 30.0))[
                0
            ].state is ClaimState.CLAIMED
        async with claims.transaction() as conn:
            await claims.complete(conn, "old", "me/1")
        await asyncio.sleep(0.05)
        assert await claims.prune(older_than=3600.0) == 0
        assert await claims.prune(older_than=0.01) == 1  # only the done one
        assert (await claims.claim_many([("old", "me/2")], 30.0))[0].state is ClaimState.CLAIMED
        assert (await claims.claim_many([("open", "me/2")], 30.0))[0].state is ClaimState.HELD
    finally:
        await claims.close()


async def test_instances_claiming_shared_ids_in_opposite_orders_never_fail(
    bus: Transport, store_url: str
) -> None:
    from stalwart.service.claims import Claims, ClaimState

    # Given two instances whose batches hold the same ids, one in reverse order
    # (an upsert locks every row it conflicts with: unordered, they deadlock)
    first, second = Claims(store_url, "order-test"), Claims(store_url, "order-test")
    await first.open()
    try:
        for round_ in range(20):
            ids = [f"r{round_}-{n:02d}" for n in range(30)]
            # When both claim at once
            got = await asyncio.gather(
                first.claim_many([(m, "first/1") for m in ids], 30.0),
                second.claim_many([(m, "second/1") for m in reversed(ids)], 30.0),
            )
            # Then neither raises, and each id is claimed by exactly one of them
            claimed = [c.state is ClaimState.CLAIMED for batch in got for c in batch]
            assert sum(claimed) == len(ids)
    finally:
        await first.close()
        await second.close()


async def test_a_transaction_aborted_for_a_conflict_is_run_again() -> None:
    from sqlalchemy.exc import DBAPIError

    from stalwart.errors import StoreUnavailable
    from stalwart.service.claims import Claims

    class Aborted(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__(f"aborted ({sqlstate})")
            self.sqlstate = sqlstate

    claims = Claims("sqlite+aiosqlite:///:memory:", "conflict-test")
    tries: list[int] = []

    async def work(sqlstate: str, fails: int) -> str:
        tries.append(1)
        if len(tries) <= fails:
            raise DBAPIError("UPDATE ...", None, Aborted(sqlstate))
        return "done"

    try:
        # Given work that PostgreSQL aborts twice for a deadlock (SQLSTATE 40P01)
        # When it is run, Then it is run again until it commits
        assert await claims._run(lambda conn: work("40P01", 2)) == "done"
        assert len(tries) == 3
        # And an error of another class is not retried: the store is away
        tries.clear()
        with pytest.raises(StoreUnavailable, match="08006"):
            await claims._run(lambda conn: work("08006", 1))
        assert len(tries) == 1
    finally:
        await claims.close()


async def test_a_too_long_id_is_rejected_under_a_storable_id_and_the_next_ones_pass(
    bus: Transport, settings: Settings, unique: str, lifecycle, started
) -> None:
    from stalwart.envelope import message_id_of

    # Given a foreign message whose id is 65 characters, then good messages
    svc = Service(f"longid-{unique}")

    @svc.handler("work.item")
    async def work(ctx: Context, body: Any) -> None:
        return None

    await start(started, ServiceRunner(svc, bus, settings))
    raw = b'{"id": "' + b"x" * 65 + b'", "topic": "work.item", "body": 1}'
    with sqlite3.connect(bus.path) as conn:  # type: ignore[attr-defined]
        conn.execute(
            "INSERT INTO messages (queue, raw, visible_at) VALUES (?, ?, ?)",
            (svc.name, raw, time.time()),
        )
    good = [Envelope.new("work.item", {"n": n}) for n in range(3)]
    await bus.publish(good)
    # Then it is rejected under the id derived from its bytes, which a store can keep
    stored_id = message_id_of(raw, None)
    assert stored_id.startswith("raw-") and len(stored_id) <= 64
    await lifecycle.wait(stored_id, svc.name, S.REJECTED)
    assert "undecodable" in lifecycle.reason(stored_id, svc.name, S.REJECTED)
    # And the good ones are consumed
    for envelope in good:
        await lifecycle.wait(envelope.id, svc.name, S.CONSUMED)
