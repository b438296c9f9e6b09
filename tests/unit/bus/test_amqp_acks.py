"""Acks of an amqp consumer go out in batches, and never ack a tag still held."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from stalwart.bus.amqp._acks import Acks


class _Channel:
    """Records the ack frames an aiormq channel would send."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bool]] = []

    async def basic_ack(self, tag: int, *, multiple: bool, wait: bool) -> None:
        self.frames.append((tag, multiple))


def _acks(tags: range) -> tuple[Acks, _Channel]:
    channel = _Channel()
    acks = Acks()
    acks.reset(channel)  # type: ignore[arg-type]
    for tag in tags:
        acks.received(tag)
    return acks, channel


async def _turn() -> None:
    """Let the event loop run the flush."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_acks_in_order_go_out_as_one_multiple_ack() -> None:
    # Given five deliveries of which the first three are acked in one turn
    acks, channel = _acks(range(1, 6))
    for tag in (1, 2, 3):
        acks.ack(tag)
    # When the loop turns
    await _turn()
    # Then one frame acks all three
    assert channel.frames == [(3, True)]


async def test_a_tag_still_held_below_is_not_covered_by_a_multiple_ack() -> None:
    # Given tag 1 held by a slow handler while 2 and 3 are acked
    acks, channel = _acks(range(1, 4))
    acks.ack(2)
    acks.ack(3)
    await _turn()
    # Then they are acked one by one, not up to 3 (which would ack 1 too)
    assert channel.frames == [(2, False), (3, False)]
    # And when 1 is acked later, only it goes
    acks.ack(1)
    await _turn()
    assert channel.frames[2:] == [(1, True)]


async def test_a_nacked_tag_no_longer_holds_back_the_multiple_ack() -> None:
    acks, channel = _acks(range(1, 4))
    acks.closed(1)  # nacked with a frame of its own
    acks.ack(3)
    acks.ack(2)
    await _turn()
    assert channel.frames == [(3, True)]


async def test_flush_sends_what_is_recorded_before_the_channel_closes() -> None:
    acks, channel = _acks(range(1, 3))
    acks.ack(1)
    await acks.flush()
    assert channel.frames == [(1, True)]


async def test_a_new_channel_forgets_the_acks_of_the_old_one() -> None:
    acks, old = _acks(range(1, 3))
    acks.ack(1)
    fresh = _Channel()
    acks.reset(fresh)  # type: ignore[arg-type]
    await _turn()
    assert old.frames == [] and fresh.frames == []


async def test_a_failing_channel_is_logged_and_later_acks_still_flush(caplog: Any) -> None:
    class _Broken(_Channel):
        async def basic_ack(self, tag: int, *, multiple: bool, wait: bool) -> None:
            raise RuntimeError("channel closed")

    caplog.set_level(logging.INFO, logger="stalwart.bus.amqp")
    acks = Acks()
    acks.reset(_Broken())  # type: ignore[arg-type]
    acks.received(1)
    acks.ack(1)
    await _turn()
    assert "will be redelivered" in caplog.text
    channel = _Channel()
    acks.reset(channel)  # type: ignore[arg-type]
    acks.received(1)
    acks.ack(1)
    await _turn()
    assert channel.frames == [(1, True)]
