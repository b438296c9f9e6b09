"""Isolating refused rows: every good row written, in few transactions, each bad one named."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.envelope import DeliveryState, Envelope, Transition
from stalwart.messages import LIFECYCLE_TOPIC, LifecycleBatch
from stalwart.store import StoreDataError
from stalwart.store._isolate import judge, refused_rows
from stalwart.store._rows import Rows, build_rows


class _Database:
    """Accepts a batch unless it holds a message id starting with "bad"; keeps what it took."""

    def __init__(self) -> None:
        self.transactions = 0
        self.ids: list[str] = []

    async def write(self, rows: Rows) -> None:
        self.transactions += 1
        ids = [r["id"] for r in rows.messages] + [r["message_id"] for r in rows.transitions]
        ids += [key[0] for key in rows.deliveries]
        if any(i.startswith("bad") for i in ids):
            raise StoreDataError("the store refused a batch: value too long")
        self.ids += ids


def _lifecycle(ids: list[str]) -> Envelope:
    steps = [Transition(message_id=i, service="qa", state=DeliveryState.CONSUMED) for i in ids]
    return Envelope.new(LIFECYCLE_TOPIC, LifecycleBatch(transitions=steps))


@settings(max_examples=30, deadline=None)
@given(size=st.integers(2, 400), bad=st.sets(st.integers(0, 399), min_size=1, max_size=3))
async def test_every_good_row_goes_in_and_each_bad_one_is_named(size: int, bad: set[int]) -> None:
    # Given a lifecycle batch of `size` transitions, a few of them refused
    ids = [f"bad-{i}" if i in bad else f"ok-{i}" for i in range(size)]
    envelope = _lifecycle(ids)
    rows = build_rows([(envelope, 100)])
    database = _Database()
    # When its rows are isolated
    refused = await refused_rows(database.write, rows)
    # Then every good transition and delivery went in, and only the bad ones were refused
    good = [i for i in ids if i.startswith("ok")]
    assert sorted(database.ids) == sorted([envelope.id, *good, *good])
    named = {(table, key[0]) for table, key in refused}
    assert named == {
        (t, i) for i in ids if i.startswith("bad") for t in ("transitions", "deliveries")
    }
    # In about 2·log2(n) transactions per bad row, not one per row
    rows_count = 1 + 2 * size
    assert database.transactions <= 2 * len(named) * math.ceil(math.log2(rows_count)) + 2


async def test_a_delivery_is_dead_lettered_only_when_nothing_it_said_was_stored() -> None:
    # Given two lifecycle batches: one partly refused, one wholly refused
    partly, wholly = _lifecycle(["ok-1", "bad-1"]), _lifecycle(["bad-2"])
    rows = build_rows([(partly, 100), (wholly, 100)])
    refused = await refused_rows(_Database().write, rows)
    # When each is judged on its own rows
    kept = judge(partly.id, partly.topic, build_rows([(partly, 100)]), refused)
    lost = judge(wholly.id, wholly.topic, build_rows([(wholly, 100)]), refused)
    # Then the first is acknowledged and the second dead-lettered, both reported by name
    assert kept.problem is None and lost.problem == "the store refused a batch: value too long"
    assert [r["refs"]["message_id"] for r in kept.reports] == ["bad-1", "bad-1"]
    assert all("bad-2" in r["text"] and r["source"] == "stalwart-persist" for r in lost.reports)
