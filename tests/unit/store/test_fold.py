"""Out-of-order and duplicated transitions converge to one delivery row (pure Python fold)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stalwart.envelope import DeliveryState, Transition, state_rank
from stalwart.store._rows import Rows, fold_transition
from stalwart.store.schema import STATE_COLUMNS

_T0 = datetime(2026, 1, 1, tzinfo=UTC)

transitions = st.builds(
    Transition,
    message_id=st.just("m-1"),
    service=st.just("qa"),
    state=st.sampled_from(list(DeliveryState)),
    at=st.integers(0, 50).map(lambda s: _T0 + timedelta(seconds=s)),
    reason=st.sampled_from([None, "timeout", "bad input"]),
    attempt=st.integers(1, 4),
)
# A list of transitions, and the same list shuffled with some of them repeated.
histories = st.lists(transitions, min_size=1, max_size=12).flatmap(
    lambda ts: st.tuples(st.just(ts), st.permutations(ts + ts[: len(ts) // 2]))
)


def fold(items: list[Transition]) -> dict[str, Any]:
    row: dict[str, Any] | None = None
    for t in items:
        row = fold_transition(row, t)
    assert row is not None
    return row


def unambiguous(items: list[Transition]) -> bool:
    """No two different reasons for one state at one instant (no single truth then)."""
    return len({(t.state, t.at) for t in items}) == len({(t.state, t.at, t.reason) for t in items})


@settings(max_examples=150)
@given(histories)
def test_any_order_with_duplicates_gives_the_same_row(
    case: tuple[list[Transition], list[Transition]],
) -> None:
    # Given transitions and a shuffled copy with duplicates
    original, shuffled = case
    assume(unambiguous(original))
    # When both are folded; Then the rows are equal
    assert fold(original) == fold(shuffled)


@given(st.lists(transitions, min_size=1, max_size=12))
def test_the_state_is_the_highest_ranked_one_seen(items: list[Transition]) -> None:
    # When folding any history; Then the state is the top-ranked one and attempts the max
    row = fold(items)
    best = max(items, key=lambda t: (state_rank(t.state), t.at))
    assert row["state"] == best.state.value
    assert row["last_at"] == best.at
    assert row["attempts"] == max(t.attempt for t in items)
    assert row[f"{best.state.value}_at"] == max(t.at for t in items if t.state == best.state)


@given(st.lists(transitions, min_size=1, max_size=12), st.sampled_from([None, "qa.verify.eu"]))
def test_each_state_keeps_its_latest_time_and_the_winner_its_details(
    items: list[Transition], topic: str | None
) -> None:
    # Given a history whose first transition may carry the topic
    items[0] = items[0].model_copy(update={"topic": topic, "instance": "qa@eu/h1"})
    # When folding it
    row = fold(items)
    # Then every state's column is its latest time (None if never seen), the
    # winner's reason and instance are kept, and the topic is the first one known
    for state, column in STATE_COLUMNS.items():
        seen = [t.at for t in items if t.state.value == state]
        assert row[column] == (max(seen) if seen else None)
    best = max(items, key=lambda t: (state_rank(t.state), t.at))
    winners = [t for t in items if (t.state, t.at) == (best.state, best.at)]
    assert (row["reason"], row["instance"]) in {(t.reason, t.instance) for t in winners}
    assert row["topic"] == topic
    assert row["message_id"] == "m-1" and row["service"] == "qa"


def test_rows_of_a_batch_are_sorted_by_key_to_avoid_deadlocks() -> None:
    rows = Rows(deliveries={("b", "x"): {"k": 2}, ("a", "y"): {"k": 1}})
    assert rows.sorted_deliveries() == [{"k": 1}, {"k": 2}]
