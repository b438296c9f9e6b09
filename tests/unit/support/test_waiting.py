"""The tests' one wait helper: it returns what it waited for, and its timeout says what it saw."""

from __future__ import annotations

import itertools

import pytest

from waiting import until, until_sync


async def test_until_returns_the_first_accepted_value_of_a_plain_or_async_probe() -> None:
    # Given a counter that reaches 3 on its third call
    counter = itertools.count(1)

    async def later() -> int:
        return next(counter)

    # When waiting until it is at least 3, then until a plain probe is truthy
    got = await until(later, 5.0, "the third call", accept=lambda n: n >= 3, interval=0.001)
    plain = await until(lambda: "ready", 5.0, "a plain probe")
    # Then each wait gives back the value that ended it
    assert (got, plain) == (3, "ready")


async def test_until_fails_naming_what_it_awaited_and_the_last_value_seen() -> None:
    with pytest.raises(
        AssertionError, match=r"after 0.05 s waiting for the queue to drain; last seen: \[1, 2\]"
    ):
        await until(lambda: [1, 2], 0.05, "the queue to drain", accept=lambda q: not q)


def test_until_sync_returns_the_value_and_fails_like_until() -> None:
    counter = itertools.count(1)
    assert until_sync(lambda: next(counter) == 2, 5.0, "the second call", interval=0.001)
    with pytest.raises(AssertionError, match="waiting for a file; last seen: None"):
        until_sync(lambda: None, 0.05, "a file", interval=0.01)


def test_a_long_last_value_is_shortened_to_its_head_and_tail() -> None:
    with pytest.raises(AssertionError) as failure:
        until_sync(lambda: "x" * 10_000 + "END", 0.01, "nothing", accept=str.isdigit)
    message = str(failure.value)
    assert len(message) < 2200 and " ... " in message and message.endswith("END'")


def test_a_timeout_that_is_not_positive_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="must be positive seconds"):
        until_sync(lambda: True, 0, "anything")
