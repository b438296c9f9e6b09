"""QueueLeaderWatch: a quorum queue's leader move becomes one sys.ha.queue-leader event."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from stalwart.bus import QueueSpec, Transport
from stalwart.envelope import Envelope
from stalwart.errors import BrokerUnavailable
from stalwart.ha.queue_leaders import QueueLeaderWatch, rabbitmqctl_leaders
from stalwart.service import EventPublisher
from waiting import until


@pytest.fixture
async def bus(embedded_bus: Transport) -> Transport:
    await embedded_bus.declare(QueueSpec(name="watch", patterns=("sys.ha.queue-leader",)))
    return embedded_bus


class _Leaders:
    """What rabbitmqctl would answer, one reading after another (an error: no node answers)."""

    def __init__(self, *readings: Mapping[str, str] | Exception) -> None:
        self._readings = list(readings)

    async def __call__(self) -> Mapping[str, str]:
        reading = self._readings.pop(0)
        if isinstance(reading, Exception):
            raise reading
        return reading


async def test_a_leader_move_is_published_once(bus: Transport) -> None:
    # Given the leaders of two queues, then no node answering, then one queue's leader moved
    read = _Leaders(
        {"x.a": "n1@h", "x.b": "n2@h", "other.c": "n1@h"},
        RuntimeError("no node answered"),
        {"x.a": "n3@h", "x.b": "n2@h", "other.c": "n3@h"},
        {"x.a": "n3@h", "x.b": "n2@h"},
    )
    watch = QueueLeaderWatch(read, EventPublisher(bus, "t@local/1"), prefix="x.")
    # When the watch reads four times
    moves = [await watch.step() for _ in range(4)]
    # Then only the move of x.a (a queue under the prefix) is reported, once
    assert [[(m.queue, m.from_node, m.to_node) for m in step] for step in moves] == [
        [],
        [],
        [("x.a", "n1@h", "n3@h")],
        [],
    ]
    # And it is on the bus as sys.ha.queue-leader
    deliveries = bus.consume("watch", 4)
    delivery = await anext(deliveries)
    assert delivery.envelope is not None
    assert delivery.envelope.topic == "sys.ha.queue-leader"
    assert delivery.envelope.body["to_node"] == "n3@h"
    await delivery.ack()
    await deliveries.aclose()  # type: ignore[attr-defined]


async def test_a_node_that_does_not_answer_says_which() -> None:
    failing = [["sh", "-c", "echo 'unable to connect to node' >&2; exit 69", "--"]]
    with pytest.raises(RuntimeError, match=r"no node answered list_queues.*unable to connect"):
        await rabbitmqctl_leaders(failing)


async def test_a_cancelled_reading_leaves_no_rabbitmqctl_behind(tmp_path: Path) -> None:
    # Given a reading whose rabbitmqctl does not answer
    pid_file = tmp_path / "pid"
    hanging = [["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60", "--"]]
    reading = asyncio.create_task(rabbitmqctl_leaders(hanging))
    await until(pid_file.exists, 10, "rabbitmqctl started")
    pid = int(pid_file.read_text())
    # When the watch is cancelled mid-reading
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    # Then the child is gone (killed and reaped), not left running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


class _FlakyBus:
    """A bus that refuses the first publish (the broker failing over), then takes them."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self._refuse = True

    async def publish(self, batch: list[Envelope]) -> None:
        if self._refuse:
            self._refuse = False
            raise BrokerUnavailable("failing over")
        self.published += [env.body["to_node"] for env in batch]


async def test_a_move_the_bus_refused_is_published_at_the_next_read() -> None:
    # Given a move read while the bus refuses publishes
    bus = _FlakyBus()
    read = _Leaders({"x.a": "n1@h"}, {"x.a": "n2@h"}, {"x.a": "n2@h"})
    watch = QueueLeaderWatch(read, EventPublisher(bus, "t@local/1"))  # type: ignore[arg-type]
    await watch.step()
    await watch.step()
    assert bus.published == []
    # When the watch reads again, with nothing new
    await watch.step()
    # Then the earlier move is published now, once
    assert bus.published == ["n2@h"]


async def test_a_refused_move_is_published_even_when_the_next_reading_fails() -> None:
    # Given a move read while the bus refuses publishes
    bus = _FlakyBus()
    read = _Leaders(
        {"x.a": "n1@h"}, {"x.a": "n2@h"}, ValueError("Expecting value"), {"x.a": "n2@h"}
    )
    watch = QueueLeaderWatch(read, EventPublisher(bus, "t@local/1"))  # type: ignore[arg-type]
    await watch.step()
    await watch.step()
    assert watch.unpublished == 1
    # When the next reading fails with an error no one planned for (half an answer
    # from a node being paused)
    assert await watch.step() == []
    # Then the move the bus refused is published all the same, once
    assert bus.published == ["n2@h"]
    assert watch.unpublished == 0
    # And the watch goes on reading
    assert await watch.step() == []
    assert bus.published == ["n2@h"]
