"""A row the database refuses never takes the other rows of its batch with it."""

from __future__ import annotations

from sqlalchemy import func, select
from store_traffic import Traffic, count, put_raw, running

from stalwart.bus import Transport
from stalwart.envelope import DeliveryState, Transition, encode
from stalwart.store import PERSIST_QUEUE, Persister, PersistOptions, Store
from stalwart.store._rows import printable
from stalwart.store.queries import ReportView, list_reports
from stalwart.store.schema import deliveries, messages, transitions
from waiting import until

_FAST = PersistOptions(batch_size=200, batch_interval=0.02, prefetch=400)
_SURROGATE = "surrogate-placeholder"  # becomes a JSON "\ud800" in the raw bytes


async def _drained(bus: Transport) -> bool:
    stats = await bus.queue_stats(PERSIST_QUEUE)
    return stats.ready == 0 and stats.inflight == 0


async def _transition_count(store: Store, ids: list[str]) -> tuple[int, int]:
    async with store.engine.connect() as conn:
        stored = await conn.scalar(
            select(func.count()).select_from(transitions).where(transitions.c.message_id.in_(ids))
        )
        merged = await conn.scalar(
            select(func.count())
            .select_from(deliveries)
            .where(deliveries.c.message_id.in_(ids), deliveries.c.state == "consumed")
        )
    return int(stored or 0), int(merged or 0)


def _refused(reports: list[ReportView], table: str) -> set[str]:
    return {
        r.refs.get("message_id", r.refs.get("id", "")) for r in reports if r.refs["table"] == table
    }


async def test_one_bad_transition_keeps_the_other_499_of_its_batch(
    store: Store, bus: Transport, traffic: Traffic
) -> None:
    # Given a lifecycle batch of 499 good transitions, one under a 65-character
    # message id, one whose reason holds a NUL byte and one whose reason is not
    # encodable text (a lone surrogate), as a foreign publisher could send it
    good = [traffic.message() for _ in range(499)]
    steps = [traffic.step(e, "qa", "consumed") for e in good]
    long_id = "x" * 65
    nul, surrogate = traffic.message(), traffic.message()
    steps += [
        Transition(message_id=long_id, service="qa", state=DeliveryState.CONSUMED),
        traffic.step(nul, "qa", "consumed", reason="a\x00b"),
        traffic.step(surrogate, "qa", "consumed", reason=_SURROGATE),
    ]
    batch = traffic.lifecycle(*steps)
    persister = Persister(bus, store, _FAST)
    await persister.declare()
    put_raw(bus, encode(batch).replace(_SURROGATE.encode(), b"\\ud800"))
    canary = traffic.message()
    async with running(persister):
        # When it is persisted, followed by a canary and its state
        await bus.publish([canary, traffic.lifecycle(traffic.step(canary, "qa", "consumed"))])

        async def settled() -> bool:
            return await _drained(bus) and await count(store, messages.c.id == canary.id) == 1

        await until(settled, 30.0, "the canary stored, the queue drained")
    # Then the 499 good transitions and the canary's are stored and merged
    assert await _transition_count(store, [e.id for e in good]) == (499, 499)
    assert await _transition_count(store, [canary.id]) == (1, 1)
    # And each refused row is named in an error report with why
    reports = await list_reports(store, level="error")
    refused = {long_id, nul.id, surrogate.id} if store.dialect == "postgresql" else {surrogate.id}
    assert _refused(reports, "transitions") == refused
    assert _refused(reports, "deliveries") == refused
    assert all(r.source == "stalwart-persist" and "refused" in r.text for r in reports)
    # And the batch, whose own body the store refused too, is dead-lettered whole
    (letter,) = await bus.dead_letters(PERSIST_QUEUE)
    assert letter.envelope is not None and letter.envelope.id == batch.id
    assert _refused(reports, "messages") == {batch.id}
    assert persister.stats.dead_lettered == 1


async def test_a_long_id_alone_is_reported_and_its_batch_acknowledged(
    store: Store, bus: Transport, traffic: Traffic
) -> None:
    # Given a lifecycle batch whose only fault is a 65-character message id
    good, long_id = traffic.message(), "y" * 65
    batch = traffic.lifecycle(
        traffic.step(good, "qa", "received"),
        Transition(message_id=long_id, service="qa", state=DeliveryState.RECEIVED),
    )
    persister = Persister(bus, store, _FAST)
    await persister.declare()
    async with running(persister):
        # When it is persisted
        await bus.publish([batch])

        async def settled() -> bool:
            return await _drained(bus) and await count(store, messages.c.id == batch.id) == 1

        await until(settled, 30.0, "the batch stored, the queue drained")
    # Then the good transition is stored; where the database refuses the id
    # (PostgreSQL) a report names it, and the batch itself is acknowledged
    async with store.engine.connect() as conn:
        stored = set(await conn.scalars(select(transitions.c.message_id)))
    reports = await list_reports(store, level="error")
    if store.dialect == "postgresql":
        assert stored == {good.id}
        assert _refused(reports, "transitions") == {long_id}
        assert "too long" in reports[0].text
    else:
        assert stored == {good.id, long_id} and reports == []
    assert await bus.dead_letters(PERSIST_QUEUE) == []


async def test_a_message_whose_only_row_is_refused_is_dead_lettered_alone(
    store: Store, bus: Transport, traffic: Traffic
) -> None:
    # Given a message whose body cannot be stored as text, between good ones
    bad = traffic.message(body={"note": _SURROGATE})
    neighbours = [traffic.message() for _ in range(20)]
    persister = Persister(bus, store, _FAST)
    await persister.declare()
    await bus.publish(neighbours[:10])
    put_raw(bus, encode(bad).replace(_SURROGATE.encode(), b"\\ud800"))
    await bus.publish(neighbours[10:])
    async with running(persister):
        # When they are persisted
        async def settled() -> bool:
            return len(await bus.dead_letters(PERSIST_QUEUE)) == 1 and await _drained(bus)

        await until(settled, 30.0, "one dead letter, the queue drained")
    # Then the neighbours are stored, the bad one is dead-lettered with the
    # database's reason, and a report names it
    assert await count(store) == 20
    (letter,) = await bus.dead_letters(PERSIST_QUEUE)
    assert letter.envelope is not None and letter.envelope.id == bad.id
    assert "refused" in letter.reason and "surrogate" in letter.reason
    (report,) = await list_reports(store, level="error")
    assert report.refs["id"] == printable(bad.id, 500) and report.refs["table"] == "messages"
