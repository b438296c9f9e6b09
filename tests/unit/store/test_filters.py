"""Topic patterns as SQL regexes agree with the bus's matcher; cursors and times parse."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart.store._filters import (
    BadCursor,
    decode_cursor,
    encode_cursor,
    pattern_regex,
    scan_first,
)
from stalwart.store._models import MessageFilter
from stalwart.store._times import TimeFormatError, parse_duration, parse_when
from stalwart.topics import matches

words = st.sampled_from(["a", "b", "sys", "x-1", "q_2"])
topics = st.lists(words, min_size=1, max_size=5).map(".".join)
patterns = st.lists(st.one_of(words, st.just("*"), st.just("#")), min_size=1, max_size=5).map(
    ".".join
)


@given(patterns, topics)
def test_the_regex_matches_exactly_when_the_bus_would_route(pattern: str, topic: str) -> None:
    # Given any pattern and topic; When both matchers judge; Then they agree
    assert (re.search(pattern_regex(pattern), "." + topic) is not None) == matches(pattern, topic)


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    when = datetime(2026, 11, 22, 3, 0, 0, 123456, tzinfo=UTC)
    assert decode_cursor(encode_cursor(when, "id-1")) == (when, "id-1")
    with pytest.raises(BadCursor, match="next"):
        decode_cursor("%%%")


def test_times_are_iso_or_relative_and_bad_ones_say_how() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert parse_when("10m", now) == now - timedelta(minutes=10)
    assert parse_when("3d", now) == now - timedelta(days=3)
    assert parse_when("2026-11-22T03:00:00") == datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    assert parse_when("2026-11-22T05:00:00+02:00") == datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    assert parse_duration("90d") == timedelta(days=90)
    with pytest.raises(TimeFormatError, match="ISO-8601"):
        parse_when("yesterday")
    with pytest.raises(TimeFormatError, match="unit"):
        parse_duration("90")


@pytest.mark.parametrize(
    ("fields", "sqlite", "postgresql"),
    [
        ({"topic": "pipeline.#"}, True, True),
        ({"sender": "qa"}, True, True),
        ({"state": "dead"}, True, False),
        ({"service": "qa", "state": "failed"}, True, False),
        ({"topic": "pipeline.#", "state": "dead"}, True, True),
        ({"topic": "qa.verify.eu"}, False, False),
        ({"kind": "VerifyRequest"}, False, False),
    ],
)
def test_newest_windows_are_tried_only_where_the_planner_needs_them(
    fields: dict[str, str], sqlite: bool, postgresql: bool
) -> None:
    # Given a filter; When choosing the plan on each database
    f = MessageFilter(**fields)
    # Then SQLite walks the newest messages for broad filters, and PostgreSQL
    # leaves delivery filters alone to its planner
    assert scan_first(f, "sqlite") is sqlite
    assert scan_first(f, "postgresql") is postgresql
