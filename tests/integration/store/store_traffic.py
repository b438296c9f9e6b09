"""Helpers of the store tests: traffic builders (envelopes and their lifecycle
batches), a running persister, polling until a condition holds, counting messages."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import datetime

from hypothesis import HealthCheck, settings
from sqlalchemy import func, select

from stalwart.bus import Transport
from stalwart.envelope import DeliveryState, Envelope, Transition, utcnow
from stalwart.messages import LIFECYCLE_TOPIC, LifecycleBatch
from stalwart.store import PERSIST_QUEUE, Persister, Store
from stalwart.store.schema import messages


class Traffic:
    """Builds envelopes and the lifecycle batches that describe their deliveries."""

    @staticmethod
    def message(
        topic: str = "pipeline.process.jao", body: object = None, **fields: object
    ) -> Envelope:
        fields.setdefault("sender", "dispatcher@jao/host-1")
        return Envelope.new(topic, body if body is not None else {"ous": "uid://A001/X1"}, **fields)

    @staticmethod
    def lifecycle(*transitions: Transition) -> Envelope:
        return Envelope.new(LIFECYCLE_TOPIC, LifecycleBatch(transitions=list(transitions)))

    @staticmethod
    def step(
        env: Envelope, service: str, state: str, at: datetime | None = None, **fields: object
    ) -> Transition:
        return Transition(
            message_id=env.id,
            service=service,
            state=DeliveryState(state),
            at=at or utcnow(),
            topic=env.topic,
            **fields,  # type: ignore[arg-type]
        )


def put_raw(bus: Transport, raw: bytes, queue: str = PERSIST_QUEUE) -> None:
    """Write bytes straight into an embedded bus's queue, as a foreign client could."""
    with sqlite3.connect(bus.path) as conn:  # type: ignore[attr-defined]
        conn.execute(
            "INSERT INTO messages (queue, raw, visible_at) VALUES (?, ?, ?)",
            (queue, raw, time.time()),
        )


@contextlib.asynccontextmanager
async def running(persister: Persister) -> AsyncIterator[asyncio.Task[None]]:
    """Run the persister in the background; stop it and wait for it on the way out."""
    task = asyncio.create_task(persister.run())
    try:
        yield task
    finally:
        persister.stop()
        await asyncio.wait_for(task, 30.0)


async def count(store: Store, *where: object) -> int:
    query = select(func.count()).select_from(messages).where(*where)  # type: ignore[arg-type]
    async with store.engine.connect() as conn:
        return int(await conn.scalar(query) or 0)


def database_examples(count: int) -> settings:
    """Hypothesis settings for examples that each go through a real database."""
    return settings(
        max_examples=count,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
