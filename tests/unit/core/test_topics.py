"""Topic patterns with AMQP topic-exchange semantics, checked against a reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart.errors import TopicError
from stalwart.topics import Pattern, matches, validate_pattern, validate_topic


def reference(pattern: list[str], words: list[str]) -> bool:
    """AMQP semantics by plain recursion: the specification, not an algorithm."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(reference(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and reference(rest, words[1:])


word = st.sampled_from(["a", "b", "c", "jao", "eu"])
topics = st.lists(word, min_size=1, max_size=7)
patterns = st.lists(st.one_of(word, st.just("*"), st.just("#")), min_size=1, max_size=6)


@given(patterns, topics)
def test_matches_agrees_with_the_reference(pattern, topic) -> None:
    assert matches(".".join(pattern), ".".join(topic)) == reference(pattern, topic)


@given(topics)
def test_hash_matches_everything_and_a_topic_matches_itself(topic) -> None:
    text = ".".join(topic)
    assert matches("#", text) and matches(text, text)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("pipeline.*.jao", "pipeline.process.jao", True),
        ("pipeline.*", "pipeline.process.jao", False),
        ("pipeline.#", "pipeline", True),
        ("pipeline.#.jao", "pipeline.jao", True),
        ("pipeline.#.jao", "pipeline.a.b.jao", True),
        ("*.jao", "jao", False),
        ("sys.heartbeat.*", "sys.heartbeat.qa", True),
    ],
)
def test_examples(pattern: str, topic: str, expected: bool) -> None:
    assert Pattern(pattern).matches(topic) is expected


@pytest.mark.parametrize("bad", ["", "A.b", "a..b", "a b", "a.#x", "x" * 300])
def test_bad_patterns_and_topics_are_refused(bad: str) -> None:
    with pytest.raises(TopicError):
        validate_pattern(bad)
    with pytest.raises(TopicError):
        validate_topic(bad)


def test_wildcards_are_not_topics() -> None:
    with pytest.raises(TopicError):
        validate_topic("a.*")
