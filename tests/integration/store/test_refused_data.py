"""PostgreSQL refusing a value is a data error (isolate the item), not an outage (retry)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Table, func, select

from stalwart.envelope import DeliveryState, Envelope, Transition
from stalwart.messages import LIFECYCLE_TOPIC, LifecycleBatch
from stalwart.store import Store, StoreDataError
from stalwart.store._rows import build_rows
from stalwart.store.schema import deliveries, messages, transitions


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[Store]:
    store = await Store.open(postgres_url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def envs() -> list[Envelope]:
    return [Envelope.new("pipeline.process.eu", {"n": i}) for i in range(3)]


async def _count(store: Store, table: Table) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def test_too_long_value_on_postgres_is_refused_and_nothing_is_written(
    pg_store: Store, envs: list[Envelope]
) -> None:
    # Given a batch whose first message id is longer than the column allows
    rows = build_rows([(e, 10) for e in envs])
    rows.messages[0]["id"] = "x" * 100
    # When it is written
    with pytest.raises(StoreDataError, match="too long"):
        await pg_store.write_rows(rows)
    # Then the whole batch is rolled back, and the valid rows still go in alone
    assert await _count(pg_store, messages) == 0
    await pg_store.write(envs[1:])
    assert await _count(pg_store, messages) == 2


async def test_a_refused_transition_takes_its_batch_messages_back_with_it(
    pg_store: Store, envs: list[Envelope]
) -> None:
    # Given a batch whose messages are valid but one of whose transitions names a
    # service longer than the column allows (refused after the messages went in)
    steps = [Transition(message_id=e.id, service="qa", state=DeliveryState.SENT) for e in envs]
    steps[-1] = steps[-1].model_copy(update={"service": "s" * 300})
    lifecycle = Envelope.new(LIFECYCLE_TOPIC, LifecycleBatch(transitions=steps))
    rows = build_rows([(e, 10) for e in [*envs, lifecycle]])
    # When it is written
    with pytest.raises(StoreDataError, match="too long"):
        await pg_store.write_rows(rows)
    # Then nothing of the batch stays: the copies ran in its one transaction
    for table in (messages, transitions, deliveries):
        assert await _count(pg_store, table) == 0
