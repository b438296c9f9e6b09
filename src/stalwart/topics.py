"""Topic names and AMQP-style topic patterns.

A topic is dotted lower-case words (``pipeline.process.jao``). A pattern may
use ``*`` for exactly one word and ``#`` for zero or more words, with the
semantics of an AMQP topic exchange, on every transport.
"""

from __future__ import annotations

import re
from functools import lru_cache

from stalwart.errors import TopicError

__all__ = ["Pattern", "matches", "validate_pattern", "validate_topic"]

_WORD = re.compile(r"^[a-z0-9_][a-z0-9_\-]*$")


@lru_cache(maxsize=4096)
def validate_topic(topic: str) -> str:
    """Return ``topic`` if well formed, else raise :class:`TopicError`.

    Cached: a process sends and receives few distinct topics, each many times,
    and every envelope built or decoded checks its topic (bad ones raise, and
    are not cached).
    """
    if not topic or len(topic) > 255:
        raise TopicError(f"topic {topic!r} must be 1 to 255 characters")
    for word in topic.split("."):
        if not _WORD.match(word):
            raise TopicError(
                f"topic {topic!r} has a bad word {word!r}: use dotted lower-case words "
                "of a-z, 0-9, '_' or '-', e.g. 'pipeline.process.jao'"
            )
    return topic


def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if well formed (words, ``*`` or ``#``), else raise."""
    if not pattern or len(pattern) > 255:
        raise TopicError(f"pattern {pattern!r} must be 1 to 255 characters")
    for word in pattern.split("."):
        if word not in ("*", "#") and not _WORD.match(word):
            raise TopicError(
                f"pattern {pattern!r} has a bad word {word!r}: use words, '*' (one word) "
                "or '#' (zero or more words)"
            )
    return pattern


class Pattern:
    """A compiled topic pattern; ``Pattern('a.*.c').matches('a.b.c')``."""

    __slots__ = ("_words", "text")

    def __init__(self, text: str) -> None:
        self.text = validate_pattern(text)
        self._words = tuple(text.split("."))

    def matches(self, topic: str) -> bool:
        return _match(self._words, tuple(topic.split(".")))

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    """Iterative matcher with backtracking on ``#`` (linear in practice)."""
    p = w = 0
    star_p = star_w = -1
    while w < len(words):
        if p < len(pattern) and pattern[p] == "#":
            star_p, star_w = p, w
            p += 1
        elif p < len(pattern) and (pattern[p] == "*" or pattern[p] == words[w]):
            p += 1
            w += 1
        elif star_p >= 0:
            star_w += 1
            w = star_w
            p = star_p + 1
        else:
            return False
    while p < len(pattern) and pattern[p] == "#":
        p += 1
    return p == len(pattern)


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> Pattern:
    return Pattern(pattern)


def matches(pattern: str, topic: str) -> bool:
    """True when ``topic`` matches ``pattern`` under AMQP topic semantics."""
    return _compiled(pattern).matches(topic)
