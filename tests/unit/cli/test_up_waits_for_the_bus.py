"""`stalwart up --demo` waits for the services' queues, and for a broker that is down
at start, instead of stopping every part."""

from __future__ import annotations

import pytest

from stalwart.cli.up import _wait_for_queues
from stalwart.errors import BrokerUnavailable, StalwartError


class _Bus:
    """Answers ``queues()`` from ``answers`` in turn (an exception: the broker is down)."""

    def __init__(self, *answers: list[str] | Exception) -> None:
        self._answers = list(answers)

    async def queues(self) -> list[str]:
        answer = self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_a_broker_down_at_start_is_waited_for() -> None:
    down = BrokerUnavailable("cannot reach RabbitMQ")
    bus = _Bus(down, down, ["qa"], ["qa", "delivery"])
    await _wait_for_queues(bus, {"qa", "delivery"}, 10.0)  # type: ignore[arg-type]


async def test_a_broker_that_stays_down_is_named_when_the_wait_ends() -> None:
    bus = _Bus(BrokerUnavailable("cannot reach RabbitMQ at 10.77.1.1"))
    with pytest.raises(StalwartError, match=r"qa did not start within 0s \(the bus: cannot reach"):
        await _wait_for_queues(bus, {"qa"}, 0.0)  # type: ignore[arg-type]
