"""``--service S --state ST`` pages come through the deliveries' copy of the
message time: the same messages, in the same order, as the definition says,
whether the transitions carried that time or not, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select
from store_traffic import Traffic, database_examples

from stalwart.envelope import Envelope
from stalwart.ids import new_id
from stalwart.store import Store, upgrade
from stalwart.store._filters import in_delivery_time
from stalwart.store._rows import message_row
from stalwart.store.engine import make_engine
from stalwart.store.queries import MessageFilter, list_messages
from stalwart.store.schema import deliveries, messages

_T0 = datetime(2026, 3, 1, tzinfo=UTC)
_STATES = ("consumed", "failed", "dead")

# One message: its second (few values, so that times tie), its service and
# state, whether its transition carries the message's time, whether the
# transition is stored before the message.
_messages = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.sampled_from(["qa", "archive"]),
        st.sampled_from(_STATES),
        st.booleans(),
        st.booleans(),
    ),
    min_size=1,
    max_size=14,
)


async def _all_pages(store: Store, f: MessageFilter, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        page = await list_messages(store, f, limit=limit, after=cursor)
        seen += [m.id for m in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return seen
    raise AssertionError("pages never ended")


@pytest.mark.slow
def test_pages_hold_exactly_the_pairs_messages_newest_first(store_url: str) -> None:
    with asyncio.Runner() as runner:
        store = runner.run(Store.open(store_url))

        @database_examples(25)
        @given(
            _messages,
            st.sampled_from(["qa", "archive"]),
            st.sampled_from(_STATES),
            st.integers(1, 4),
            st.none() | st.integers(0, 5),
            st.none() | st.integers(1, 6),
        )
        def check(
            chosen: list[Any],
            service: str,
            state: str,
            limit: int,
            since: int | None,
            until: int | None,
        ) -> None:
            # Given messages with one delivery each, some transitions carrying the
            # message's time and some not, some stored before their message
            run = new_id()[-8:]  # services of this example only
            early, late = [], []
            envs = []
            for second, svc, st_, stamped, first in chosen:
                env = Traffic.message(created_at=_T0 + timedelta(seconds=second))
                envs.append((env, f"{svc}-{run}", st_))
                created = env.created_at if stamped else None
                step = Traffic.step(env, f"{svc}-{run}", st_, message_created_at=created)
                (early if first else late).append(step)
            batches: list[list[Envelope]] = [
                [Traffic.lifecycle(*early)] if early else [],
                [env for env, _, _ in envs],
                [Traffic.lifecycle(*late)] if late else [],
            ]
            for batch in batches:
                if batch:
                    runner.run(store.write(batch))
            # When paging through one service and state (and a time range)
            f = MessageFilter(
                service=f"{service}-{run}",
                state=state,
                since=None if since is None else _T0 + timedelta(seconds=since),
                until=None if until is None else _T0 + timedelta(seconds=until),
            )
            assert in_delivery_time(f)
            got = runner.run(_all_pages(store, f, limit))
            # Then they are that pair's messages in the range, newest first, each once
            wanted = sorted(
                (
                    env
                    for env, svc, st_ in envs
                    if svc == f.service
                    and st_ == state
                    and (f.since is None or env.created_at >= f.since)
                    and (f.until is None or env.created_at < f.until)
                ),
                key=lambda e: (e.created_at, e.id),
                reverse=True,
            )
            assert got == [e.id for e in wanted]

        try:
            check()
        finally:
            runner.run(store.close())


async def test_upgrading_a_filled_store_gives_deliveries_their_message_time(
    store_url: str,
) -> None:
    # Given a store at revision 0002 holding messages and their deliveries
    engine = make_engine(store_url)
    envs = [Traffic.message(created_at=_T0 + timedelta(seconds=s)) for s in (3, 1, 2)]
    try:
        await upgrade(engine, "0002")
        async with engine.begin() as conn:
            await conn.execute(insert(messages), [message_row(e, 100, _T0) for e in envs])
            await conn.execute(
                insert(deliveries),
                [
                    {"message_id": e.id, "service": "qa", "state": "dead", "state_rank": 5,
                     "last_at": _T0, "attempts": 3}
                    for e in envs
                ],
            )  # fmt: skip
    finally:
        await engine.dispose()
    # When it is upgraded to the newest revision
    store = await Store.open(store_url)
    try:
        # Then every delivery holds its message's time, and the pair pages in that order
        async with store.engine.connect() as conn:
            query = select(deliveries.c.message_id, deliveries.c.message_created_at)
            times = {row.message_id: row.message_created_at for row in await conn.execute(query)}
        assert times == {e.id: e.created_at for e in envs}
        page = await list_messages(store, MessageFilter(service="qa", state="dead"), limit=2)
        assert [m.id for m in page.items] == [envs[0].id, envs[2].id]
        rest = await list_messages(
            store, MessageFilter(service="qa", state="dead"), after=page.next_cursor
        )
        assert [m.id for m in rest.items] == [envs[1].id] and rest.next_cursor is None
    finally:
        await store.close()


def test_only_a_service_and_a_state_with_at_most_a_time_range_take_this_plan() -> None:
    assert in_delivery_time(MessageFilter(service="qa", state="dead", since=_T0))
    assert not in_delivery_time(MessageFilter(service="qa"))
    assert not in_delivery_time(MessageFilter(state="dead"))
    assert not in_delivery_time(MessageFilter(service="qa", state="dead", topic="qa.#"))
    assert not in_delivery_time(MessageFilter(service="qa", state="dead", text="antenna"))
