"""consume_forever: a long-lived part's consumer, declared and started again until
the transport closes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from stalwart.backoff import Backoff
from stalwart.bus import QueueSpec, consume_forever
from stalwart.errors import BrokerUnavailable, TransportClosed

_SPEC = QueueSpec(name="work", patterns=("work.#",))


class _Rounds:
    """A transport whose consumers play ``rounds`` in turn: a list of deliveries (then
    the consumer ends) or an exception (raised when it starts); then it is closed."""

    def __init__(self, *rounds: list[str] | Exception) -> None:
        self._rounds = list(rounds)
        self.declared = 0
        self.closed_iterators = 0

    async def declare(self, spec: QueueSpec) -> None:
        assert spec == _SPEC
        if not self._rounds:
            raise TransportClosed("closed")
        self.declared += 1

    def consume(self, queue: str, prefetch: int) -> AsyncIterator[Any]:
        assert (queue, prefetch) == ("work", 8)
        return self._consume(self._rounds.pop(0))

    async def _consume(self, round_: list[str] | Exception) -> AsyncIterator[Any]:
        try:
            if isinstance(round_, Exception):
                raise round_
            for item in round_:
                yield item
        finally:
            self.closed_iterators += 1


class _Pace(Backoff):
    """A pace with no waiting that counts its delays and resets."""

    def __init__(self) -> None:
        super().__init__(0.001, 0.001)
        self.delays = 0
        self.resets = 0

    def next(self) -> float:
        self.delays += 1
        return super().next()

    def reset(self) -> None:
        self.resets += 1
        super().reset()


async def test_every_round_is_declared_and_consumed_until_the_transport_closes() -> None:
    # Given consumers that end, fail with the bus's error and with a backend's own
    transport = _Rounds(
        ["a", "b"], BrokerUnavailable("queue work not found"), RuntimeError("odd"), ["c"]
    )
    states: list[str | None] = []
    pace = _Pace()
    # When a part consumes for good
    got = [
        d
        async for d in consume_forever(
            transport,  # type: ignore[arg-type]
            _SPEC,
            8,
            pace=pace,
            on_state=states.append,
        )
    ]
    # Then it got every delivery of every round, and stopped when the transport closed
    assert got == ["a", "b", "c"]
    assert transport.declared == 4
    assert transport.closed_iterators == 4
    # And heard each start and why each consumer stopped
    assert states == [
        None,
        "the transport ended it",
        None,
        "queue work not found",
        None,
        "RuntimeError('odd')",
        None,
        "the transport ended it",
    ]
    # And paused after each, starting the pace over when deliveries flowed
    assert pace.delays == 4
    assert pace.resets == 2


async def test_closing_the_iterator_closes_the_consumer() -> None:
    # Given a part consuming a round that has more to give
    transport = _Rounds(["a", "b", "c"])
    deliveries = consume_forever(transport, _SPEC, 8, pace=_Pace())  # type: ignore[arg-type]
    assert await anext(deliveries) == "a"
    # When the part stops consuming
    await deliveries.aclose()
    # Then the transport's consumer is closed with it (its prefetched are released)
    assert transport.closed_iterators == 1
