"""Probing for missing queues while other tasks open channels keeps the connection alive.

The broker answers a probe of a missing queue by closing the probing channel,
and aiormq frees the channel's number before its Close-Ok goes out: a channel
another task opens in that gap reuses the number and RabbitMQ drops the whole
connection. The test widens the gap so that the race is hit on every run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq.channel
import pytest

from stalwart.bus import QueueSpec
from stalwart.bus.amqp import AmqpTransport

Make = Callable[..., Awaitable[AmqpTransport]]

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def slow_close_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    """Delay aiormq's answer to a broker-initiated Channel.Close by 20 ms."""
    answer = aiormq.channel.Channel._on_close_frame

    async def late(self: aiormq.channel.Channel, frame: Any) -> None:
        await asyncio.sleep(0.02)
        await answer(self, frame)

    monkeypatch.setattr(aiormq.channel.Channel, "_on_close_frame", late)


@pytest.mark.usefixtures("slow_close_ok")
async def test_concurrent_probes_of_missing_queues_never_drop_the_connection(
    make_bus: Make,
) -> None:
    # Given a queue whose possible wait queues do not exist on the broker
    bus = await make_bus()
    await bus.declare(QueueSpec("probed", ("probe.x",), retry_initial=0.05, retry_max=1.0))

    # When stats probe each missing wait queue while other calls keep opening channels
    async def probe() -> None:
        for _ in range(2):
            await bus.queue_stats("probed")

    async def churn() -> int:
        calls = 0
        while not probes.done():
            await asyncio.gather(bus.dead_letters("probed"), bus.queues())
            calls += 1
        return calls

    probes = asyncio.gather(*(probe() for _ in range(3)))
    churned = await asyncio.gather(churn(), churn(), return_exceptions=True)
    # Then every call succeeds: the connection was never dropped
    await probes
    assert all(isinstance(calls, int) and calls > 0 for calls in churned), churned
    assert bus.connected and (await bus.queue_stats("probed")).ready == 0
