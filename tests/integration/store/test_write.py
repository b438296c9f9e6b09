"""Batch writes: messages, forward-only deliveries, transitions, components, reports."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select
from store_traffic import Traffic

from stalwart.envelope import Envelope, utcnow
from stalwart.messages import Heartbeat, Report, ReportLevel, heartbeat_topic, report_topic
from stalwart.store import Store
from stalwart.store._rows import build_rows
from stalwart.store._writer import write_rows
from stalwart.store.schema import components, deliveries, messages, reports, transitions


async def _count(store: Store, table: object) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.scalar(select(func.count()).select_from(table))) or 0)  # type: ignore[arg-type]


async def _delivery(store: Store, message_id: str, service: str) -> dict[str, object]:
    query = select(deliveries).where(
        deliveries.c.message_id == message_id, deliveries.c.service == service
    )
    async with store.engine.connect() as conn:
        row = (await conn.execute(query)).one()
    return dict(row._mapping)


async def test_messages_are_stored_once_however_often_written(
    store: Store, traffic: Traffic
) -> None:
    # Given two messages
    first, second = traffic.message(), traffic.message("qa.verify.eu", {"score": 0.9})
    # When they are written three times (redeliveries)
    for _ in range(3):
        await store.write([first, second])
    # Then each is stored exactly once, with its fields
    assert await _count(store, messages) == 2
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(messages).where(messages.c.id == second.id))).one()
    assert row.topic == "qa.verify.eu"
    assert row.body == {"score": 0.9}
    assert row.sender_service == "dispatcher"
    assert row.created_at == second.created_at
    assert row.signed is False


async def test_a_batch_mixing_stored_and_new_rows_stores_each_new_one_once(
    store: Store, traffic: Traffic
) -> None:
    # Given a message and its transition already stored
    old = traffic.message()
    await store.write([old, traffic.lifecycle(traffic.step(old, "qa", "received"))])
    # When a batch brings it again among new messages (one of them twice), with transitions
    new = [traffic.message("qa.verify.eu", {"n": n}) for n in range(3)]
    steps = [traffic.step(env, "qa", "consumed") for env in [old, *new]]
    await store.write([new[0], old, *new, traffic.lifecycle(*steps, steps[1])])
    # Then every message and transition is stored exactly once, and the old one is unchanged
    assert await _count(store, messages) == 4 + 2  # and the two lifecycle batches
    assert await _count(store, transitions) == 5
    assert (await _delivery(store, old.id, "qa"))["state"] == "consumed"


async def test_states_only_move_forward_whatever_the_order(store: Store, traffic: Traffic) -> None:
    # Given a message consumed at one service after a failed first attempt
    env = traffic.message()
    t0 = utcnow()
    steps = [
        traffic.step(env, "pipeline", "sent", t0),
        traffic.step(env, "pipeline", "received", t0 + timedelta(seconds=1)),
        traffic.step(env, "pipeline", "failed", t0 + timedelta(seconds=2), reason="disk full"),
        traffic.step(env, "pipeline", "received", t0 + timedelta(seconds=3), attempt=2),
        traffic.step(env, "pipeline", "consumed", t0 + timedelta(seconds=4), attempt=2),
    ]
    # When the transitions arrive newest first, in separate batches, one of them twice
    await store.write([env])
    for step in reversed(steps):
        await store.write([traffic.lifecycle(step)])
    await store.write([traffic.lifecycle(steps[2])])
    # Then the delivery is consumed, with max attempts and the latest time of each state
    row = await _delivery(store, env.id, "pipeline")
    assert row["state"] == "consumed"
    assert row["attempts"] == 2
    assert row["received_at"] == t0 + timedelta(seconds=3)
    assert row["failed_at"] == t0 + timedelta(seconds=2)
    assert row["consumed_at"] == t0 + timedelta(seconds=4)
    assert row["reason"] is None
    # And the history holds each distinct transition once
    assert await _count(store, transitions) == 5


async def test_a_batch_with_many_transitions_of_one_delivery_merges_in_one_go(
    store: Store, traffic: Traffic
) -> None:
    # Given a dead-lettered delivery whose transitions come in one lifecycle batch, shuffled
    env = traffic.message()
    t0 = utcnow()
    batch = traffic.lifecycle(
        traffic.step(env, "qa", "dead", t0 + timedelta(seconds=3), attempt=3, reason="no"),
        traffic.step(env, "qa", "sent", t0),
        traffic.step(env, "qa", "failed", t0 + timedelta(seconds=2), attempt=3),
        traffic.step(env, "qa", "received", t0 + timedelta(seconds=1)),
    )
    # When written (twice)
    await store.write([env, batch])
    await store.write([batch])
    # Then the merged state is dead with its reason
    row = await _delivery(store, env.id, "qa")
    assert (row["state"], row["attempts"], row["reason"]) == ("dead", 3, "no")


async def test_a_delivery_another_writer_stores_meanwhile_is_merged_not_refused(
    store: Store, traffic: Traffic
) -> None:
    # Given another writer's open transaction that has just stored a new delivery
    env = traffic.message()
    t0 = utcnow()
    received = traffic.lifecycle(traffic.step(env, "qa", "received", t0))
    consumed = traffic.lifecycle(traffic.step(env, "qa", "consumed", t0 + timedelta(seconds=1)))
    async with store.engine.begin() as other:
        await write_rows(other, build_rows([(received, 100)]))
        # When a batch with the same delivery's next state is written meanwhile
        racing = asyncio.create_task(store.write([consumed]))
        await asyncio.sleep(0.5)
        assert not racing.done()  # it waits for the other transaction
    await asyncio.wait_for(racing, 30)
    # Then the two are merged forward-only: the batch is not refused
    row = await _delivery(store, env.id, "qa")
    assert row["state"] == "consumed"
    assert row["received_at"] is not None and row["consumed_at"] is not None


async def test_heartbeats_keep_the_newest_per_instance(store: Store) -> None:
    # Given two heartbeats of one instance, the newer one written first
    now = utcnow()

    def beat(processed: int, at_offset: float) -> Envelope:
        body = Heartbeat(
            service="qa",
            site="eu",
            instance="qa@eu/h-1",
            host="h",
            pid=42,
            started_at=now - timedelta(minutes=5),
            uptime=300.0,
            interval=1.0,
            processed=processed,
        )
        return Envelope.new(
            heartbeat_topic("qa"), body, created_at=now + timedelta(seconds=at_offset)
        )

    await store.write([beat(20, 2.0)])
    # When the older one arrives afterwards
    await store.write([beat(10, 1.0)])
    # Then the component keeps the newer counters
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(components))).one()
    assert (row.service, row.instance, row.processed) == ("qa", "qa@eu/h-1", 20)
    assert row.last_heartbeat == now + timedelta(seconds=2.0)


async def test_reports_are_recorded_once(store: Store) -> None:
    # Given a report from a batch tool
    env = Envelope.new(
        report_topic("error"),
        Report(level=ReportLevel.ERROR, source="pipeline@jao", text="calibration failed"),
    )
    # When it is delivered twice
    await store.write([env])
    await store.write([env])
    # Then one report row exists with the envelope id
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(reports))).all()
    assert [(r.id, r.level, r.text) for r in rows] == [(env.id, "error", "calibration failed")]


async def test_an_invalid_system_body_is_stored_as_a_message_and_named(
    store: Store, traffic: Traffic
) -> None:
    # Given a lifecycle message whose body is not a LifecycleBatch, next to a good message
    good = traffic.message()
    bad = Envelope.new("sys.lifecycle", {"transitions": [{"state": "nonsense"}]})
    # When both are written
    rows = await store.write([good, bad])
    # Then both are stored as messages, the bad one is named with a reason, and no delivery exists
    assert await _count(store, messages) == 2
    assert list(rows.problems) == [1]
    assert "LifecycleBatch" in rows.problems[1] or "Message" in rows.problems[1]
    assert await _count(store, deliveries) == 0
