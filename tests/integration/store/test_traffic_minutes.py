"""Traffic from the counts kept per minute is exactly a count of the messages and
their deliveries themselves, however they were written and deleted, on both databases."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select
from store_traffic import Traffic, database_examples

from stalwart.envelope import Envelope
from stalwart.store import Store, upgrade
from stalwart.store._rows import build_rows, message_row, sender_service
from stalwart.store._writer import write_rows
from stalwart.store.engine import make_engine
from stalwart.store.queries import Edge, TopicSeries, traffic
from stalwart.store.queries import Traffic as TrafficView
from stalwart.store.retention import prune
from stalwart.store.schema import (
    deliveries,
    messages,
    traffic_edge_minutes,
    traffic_topic_minutes,
)

_NOW = datetime(2026, 3, 1, 12, 0, 25, tzinfo=UTC)
# The overview's ranges (15 min in 30 s buckets: not whole minutes), and others.
_SPANS = [(86400, 1800), (21600, 600), (3600, 120), (900, 30), (900, 60), (420, 180)]
_MINUTES_AGO = [-1, 0, 1, 2, 14, 15, 59, 60, 119, 360, 1439, 1440, 1441, 1500]

# One message: minutes and seconds before _NOW, topic, sender, the services it is
# delivered to, when it is stored (before, with or after its deliveries' first
# transitions, or never: they stay orphans), and whether it and its deliveries
# are written again (the deliveries in a later state).
_messages = st.lists(
    st.tuples(
        st.sampled_from(_MINUTES_AGO),
        st.integers(0, 59),
        st.sampled_from(["pipeline.process.jao", "qa.verify.eu", "archive.store"]),
        st.sampled_from(["dispatcher@jao/h1", "pipeline@eu/h2"]),
        st.lists(st.sampled_from(["qa", "archive", "pipeline"]), unique=True, max_size=3),
        st.sampled_from(["before", "with", "after", "never"]),
        st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


async def _stored(store: Store) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """The slow way: (created_at, topic) of every message, and (created_at,
    sender_service, service) of every (message, delivery) pair."""
    m, d = messages.c, deliveries.c
    async with store.engine.connect() as conn:
        topics = Counter(tuple(r) for r in await conn.execute(select(m.created_at, m.topic)))
        pairs = select(m.created_at, m.sender_service, d.service).join(
            deliveries, d.message_id == m.id
        )
        edges = Counter(tuple(r) for r in await conn.execute(pairs))
    return topics, edges


def _minute(at: datetime) -> int:
    return int(at.timestamp()) // 60


async def _check_kept_minutes(store: Store) -> None:
    """The kept rows are the messages and pairs grouped per minute, and nothing else."""
    topics, edges = await _stored(store)
    want_topics: Counter[tuple[Any, ...]] = Counter()
    for (at, topic), n in topics.items():
        want_topics[(_minute(at), topic)] += n
    want_edges: Counter[tuple[Any, ...]] = Counter()
    for (at, source, target), n in edges.items():
        want_edges[(_minute(at), source, target)] += n
    async with store.engine.connect() as conn:
        kept_topics = {
            (r[0], r[1]): r[2] for r in await conn.execute(select(traffic_topic_minutes))
        }
        kept_edges = {
            (r[0], r[1], r[2]): r[3] for r in await conn.execute(select(traffic_edge_minutes))
        }
    assert kept_topics == dict(want_topics)
    assert kept_edges == dict(want_edges)


def _buckets(
    counted: Counter[tuple[Any, ...]], start: int, seconds: int, count: int
) -> dict[tuple[Any, ...], list[int]]:
    """Counts per key (what follows the time in ``counted``'s keys) and bucket."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for (at, *key), n in counted.items():
        b = (int(at.timestamp()) - start) // seconds
        if 0 <= b < count:
            out.setdefault(tuple(key), [0] * count)[b] += n
    return out


async def _expected(store: Store, window: int, seconds: int) -> TrafficView:
    """``traffic()`` by its definition, from the stored rows."""
    count = -(-window // seconds)
    start = int(_NOW.timestamp()) // seconds * seconds - (count - 1) * seconds
    span = float(count * seconds)
    topics, edges = await _stored(store)
    per_edge = _buckets(edges, start, seconds, count)
    return TrafficView(
        start=datetime.fromtimestamp(start, UTC),
        window=span,
        bucket=float(seconds),
        series=[
            TopicSeries(topic=t, counts=c)
            for (t,), c in sorted(_buckets(topics, start, seconds, count).items())
        ],
        edges=[
            Edge(
                source=s,
                target=t,
                count=sum(c),
                rate=sum(c) / span,
                recent_rate=sum(c[-2:]) / (2 * seconds),
            )
            for (s, t), c in sorted(per_edge.items())
        ],
    )


async def _check(store: Store) -> None:
    """The kept minutes, and traffic over every span, are what the rows say."""
    await _check_kept_minutes(store)
    for window, seconds in _SPANS:
        got = await traffic(store, timedelta(seconds=window), timedelta(seconds=seconds), _NOW)
        assert got == await _expected(store, window, seconds), (window, seconds)


def _batches(chosen: list[Any]) -> list[list[Envelope]]:
    """Deliveries before their messages (or without them), messages with some
    deliveries, deliveries after; then some messages and deliveries again (in a
    later state), and the second batch again whole."""
    early, middle, late, again = [], [], [], []
    envs, repeated = [], []
    for minutes, second, topic, sender, services, stored, repeat in chosen:
        at = _NOW - timedelta(minutes=minutes, seconds=second)
        env = Traffic.message(topic, sender=sender, created_at=at)
        steps = [Traffic.step(env, s, "received", at=at, message_created_at=at) for s in services]
        {"before": early, "never": early, "with": middle, "after": late}[stored].extend(steps)
        if stored != "never":
            envs.append(env)
        if repeat:
            repeated += [env] if stored != "never" else []
            again += [
                Traffic.step(env, s, "consumed", at=at, message_created_at=at) for s in services
            ]
    second = [*envs, *([Traffic.lifecycle(*middle)] if middle else [])]
    return [
        [Traffic.lifecycle(*early)] if early else [],
        second,
        [Traffic.lifecycle(*late)] if late else [],
        [*repeated, *([Traffic.lifecycle(*again)] if again else [])],
        second,
    ]


@pytest.mark.slow
def test_kept_minutes_follow_every_write_and_delete(store_url: str) -> None:
    with asyncio.Runner() as runner:
        store = runner.run(Store.open(store_url))

        @database_examples(25)
        @given(_messages, st.none() | st.sampled_from(_MINUTES_AGO))
        def check(chosen: list[Any], prune_minutes: int | None) -> None:
            # Given messages stored before, with or after their deliveries (or never),
            # some of them and their deliveries written again
            for batch in _batches(chosen):
                if batch:
                    runner.run(store.write(batch))
            # Then traffic is what the stored rows say, for every span
            runner.run(_check(store))
            # And still is once retention deleted the older ones (and orphan deliveries)
            if prune_minutes is not None:
                runner.run(prune(store, _NOW - timedelta(minutes=prune_minutes)))
                runner.run(_check(store))

        try:
            check()
        finally:
            runner.run(store.close())


async def test_upgrading_a_filled_store_backfills_the_kept_minutes(store_url: str) -> None:
    # Given a store at revision 0006 holding messages, their deliveries, and an orphan one
    engine = make_engine(store_url)
    envs = [
        Traffic.message(topic, sender=sender, created_at=_NOW - timedelta(seconds=ago))
        for topic, sender, ago in [
            ("qa.verify.eu", "pipeline@eu/h2", 10),
            ("qa.verify.eu", "pipeline@eu/h2", 20),
            ("pipeline.process.jao", "dispatcher@jao/h1", 3000),
        ]
    ]
    pairs = [(envs[0].id, "qa"), (envs[0].id, "archive"), (envs[1].id, "qa"), ("gone", "qa")]
    try:
        await upgrade(engine, "0006")
        async with engine.begin() as conn:
            await conn.execute(insert(messages), [message_row(e, 100, _NOW) for e in envs])
            await conn.execute(
                insert(deliveries),
                [
                    {"message_id": m, "service": s, "state": "consumed", "state_rank": 4,
                     "last_at": _NOW, "attempts": 1}
                    for m, s in pairs
                ],
            )  # fmt: skip
    finally:
        await engine.dispose()
    # When it is upgraded to the newest revision
    store = await Store.open(store_url)
    try:
        # Then the kept minutes hold them, and traffic reads them
        await _check(store)
        hour = await traffic(store, timedelta(hours=1), timedelta(minutes=2), _NOW)
        assert {(e.source, e.target): e.count for e in hour.edges} == {
            ("pipeline", "qa"): 2,
            ("pipeline", "archive"): 1,
        }
        assert {s.topic: sum(s.counts) for s in hour.series} == {
            "qa.verify.eu": 2,
            "pipeline.process.jao": 1,
        }
    finally:
        await store.close()


@pytest.mark.parametrize("message_first", [True, False])
async def test_a_message_and_its_delivery_written_at_once_count_once(
    postgres_url: str, message_first: bool
) -> None:
    # Given a message and its delivery written by two transactions at the same time,
    # the second one while the first is not committed yet
    store = await Store.open(postgres_url)
    env = Traffic.message(created_at=_NOW)
    message, delivery = env, Traffic.lifecycle(Traffic.step(env, "qa", "received", at=_NOW))
    first, second = (message, delivery) if message_first else (delivery, message)
    try:
        async with store.engine.connect() as conn:
            await write_rows(conn, build_rows([(first, 100)]))
            later = asyncio.create_task(store.write([second]))
            await asyncio.wait({later}, timeout=1.0)
            await conn.commit()
        await later
        # Then the pair is counted once
        got = await traffic(store, timedelta(minutes=10), timedelta(minutes=1), _NOW)
        sender = sender_service(env.sender)
        assert [(e.source, e.target, e.count) for e in got.edges] == [(sender, "qa", 1)]
        await _check_kept_minutes(store)
    finally:
        await store.close()
