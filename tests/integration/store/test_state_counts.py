"""The kept delivery counts always equal a count of the deliveries themselves."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select
from store_traffic import database_examples

from stalwart.envelope import DeliveryState, Envelope, Transition
from stalwart.ids import new_id
from stalwart.messages import LIFECYCLE_TOPIC, LifecycleBatch
from stalwart.store import Store, upgrade
from stalwart.store.engine import make_engine
from stalwart.store.queries import counts_by_state
from stalwart.store.schema import deliveries

_T0 = datetime(2026, 1, 1, tzinfo=UTC)

steps = st.tuples(
    st.integers(0, 5),  # which message
    st.sampled_from(["qa", "archive", "pipeline"]),
    st.sampled_from(list(DeliveryState)),
    st.integers(0, 30),  # second
    st.integers(1, 3),  # attempt
)


async def _counted(store: Store) -> dict[str, dict[str, int]]:
    """The slow way: count the deliveries themselves."""
    query = select(deliveries.c.service, deliveries.c.state, func.count()).group_by(
        deliveries.c.service, deliveries.c.state
    )
    out: dict[str, dict[str, int]] = defaultdict(dict)
    async with store.engine.connect() as conn:
        for service, state, n in await conn.execute(query):
            out[service][state] = n
    return dict(out)


async def _delete_all(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(delete(deliveries))


def _batch(ids: list[str], chosen: list[Any]) -> Envelope:
    transitions = [
        Transition(
            message_id=ids[m],
            service=service,
            state=state,
            at=_T0 + timedelta(seconds=second),
            attempt=attempt,
        )
        for m, service, state, second, attempt in chosen
    ]
    return Envelope.new(LIFECYCLE_TOPIC, LifecycleBatch(transitions=transitions))


@pytest.mark.slow
def test_counts_follow_every_insert_update_and_delete(store_url: str) -> None:
    with asyncio.Runner() as runner:
        store = runner.run(Store.open(store_url))

        @database_examples(20)
        @given(st.lists(st.lists(steps, min_size=1, max_size=12), min_size=1, max_size=4))
        def check(batches: list[list[Any]]) -> None:
            # Given deliveries created and moved between states by several batches,
            # repeated and out of order
            ids = [new_id() for _ in range(6)]
            for chosen in batches + batches[:1]:
                runner.run(store.write([_batch(ids, chosen)]))
            # Then the kept counts are the counted ones
            assert runner.run(counts_by_state(store)) == runner.run(_counted(store))

        try:
            check()
            # And when every delivery is deleted, nothing is left counted
            runner.run(_delete_all(store))
            assert runner.run(counts_by_state(store)) == {}
        finally:
            runner.run(store.close())


async def test_upgrading_a_filled_store_backfills_the_counts(store_url: str) -> None:
    # Given a store at the first revision that already holds deliveries
    engine = make_engine(store_url)
    try:
        await upgrade(engine, "0001")
        rows = [
            {"message_id": new_id(), "service": service, "state": state, "state_rank": 0,
             "last_at": _T0, "attempts": 1}
            for service, state in [("qa", "consumed")] * 3 + [("qa", "dead"), ("archive", "sent")]
        ]  # fmt: skip
        async with engine.begin() as conn:
            await conn.execute(insert(deliveries), rows)
    finally:
        await engine.dispose()
    # When it is upgraded to the newest revision
    store = await Store.open(store_url)
    try:
        # Then the counts already hold them
        assert await counts_by_state(store) == {
            "qa": {"consumed": 3, "dead": 1},
            "archive": {"sent": 1},
        }
    finally:
        await store.close()
