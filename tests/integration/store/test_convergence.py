"""In the database: shuffled, split and repeated lifecycle batches converge to one state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from sqlalchemy import select
from store_traffic import database_examples

from stalwart.envelope import DeliveryState, Envelope, Transition
from stalwart.ids import new_id
from stalwart.messages import LIFECYCLE_TOPIC, LifecycleBatch
from stalwart.store import Store
from stalwart.store._rows import fold_transition
from stalwart.store.schema import deliveries

_T0 = datetime(2026, 1, 1, tzinfo=UTC)

steps = st.tuples(
    st.sampled_from(list(DeliveryState)),
    st.integers(0, 30),
    st.sampled_from([None, "timeout", "bad input"]),
    st.integers(1, 3),
    st.sampled_from(["qa", "archive"]),
)


def _transition(
    message_id: str, step: tuple[DeliveryState, int, str | None, int, str]
) -> Transition:
    state, second, reason, attempt, service = step
    return Transition(
        message_id=message_id,
        service=service,
        state=state,
        at=_T0 + timedelta(seconds=second),
        reason=reason,
        attempt=attempt,
    )


async def _rows(store: Store, message_id: str) -> list[dict[str, Any]]:
    query = select(deliveries).where(deliveries.c.message_id == message_id).order_by("service")
    async with store.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


@pytest.mark.slow
def test_any_arrival_order_converges_to_the_same_state(store_url: str) -> None:
    with asyncio.Runner() as runner:
        store = runner.run(Store.open(store_url))

        @database_examples(25)
        @given(st.lists(steps, min_size=1, max_size=10), st.randoms(use_true_random=False))
        def check(history: list[Any], rng: Any) -> None:
            # Given a history, unambiguous per (service, state, instant)
            keys = {(s[4], s[0], s[1]) for s in history}
            assume(len(keys) == len({(s[4], s[0], s[1], s[2]) for s in history}))
            # When it is written in order for one message, and shuffled, split into
            # batches and partly repeated for another
            first, second = new_id(), new_id()
            ordered = [_transition(first, s) for s in history]
            shuffled = [_transition(second, s) for s in history + history[: len(history) // 2]]
            rng.shuffle(shuffled)
            cut = rng.randint(0, len(shuffled))

            def batch(ts: list[Transition]) -> Envelope:
                return Envelope.new(LIFECYCLE_TOPIC, LifecycleBatch(transitions=ts))

            runner.run(store.write([batch(ordered)]))
            for part in (shuffled[:cut], shuffled[cut:], shuffled[: cut // 2]):
                if part:
                    runner.run(store.write([batch(part)]))
            # Then both messages end in the same delivery rows, equal to the Python fold
            a, b = runner.run(_rows(store, first)), runner.run(_rows(store, second))
            for row in a + b:
                row.pop("message_id")
            assert a == b
            expected: dict[str, dict[str, Any]] = {}
            for t in ordered:
                expected[t.service] = fold_transition(expected.get(t.service), t)
            assert [(r["service"], r["state"], r["attempts"]) for r in a] == [
                (s, e["state"], e["attempts"]) for s, e in sorted(expected.items())
            ]

        try:
            check()
        finally:
            runner.run(store.close())
