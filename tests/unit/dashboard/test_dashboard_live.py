"""The live hub: fan-out to viewers in batches, bounded queues, counted drops, and a
subscription renewed when it fails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import cast

from stalwart.bus import Transport
from stalwart.dashboard.live import LiveHub
from stalwart.envelope import Envelope
from stalwart.errors import BrokerUnavailable


def env(topic: str, **fields: object) -> Envelope:
    return Envelope.new(topic, {"x": 1}, sender="svc@site/1", **fields)


async def test_each_viewer_gets_the_messages_matching_its_pattern() -> None:
    # Given two viewers, one on everything, one on pipeline.*
    hub = LiveHub(None, queue_size=10)
    async with hub.subscribe("#") as all_, hub.subscribe("pipeline.*") as some:
        # When three messages arrive and the hub flushes
        hub.offer(env("pipeline.run"))
        hub.offer(env("qa.check"))
        hub.offer(env("sys.heartbeat.qa"))
        hub.flush()
        # Then each gets one batch; heartbeats are left out by default; no token leaks
        (everything,) = [all_.queue.get_nowait()]
        assert [m["topic"] for m in everything] == ["pipeline.run", "qa.check"]
        assert [m["topic"] for m in some.queue.get_nowait()] == ["pipeline.run"]
        assert all("token" not in m and "body" not in m for m in everything)
    assert hub.viewers == 0 and hub.seen == 3


async def test_infra_viewers_also_see_heartbeats() -> None:
    hub = LiveHub(None)
    async with hub.subscribe("sys.#", infra=True) as viewer:
        hub.offer(env("sys.heartbeat.qa"))
        hub.flush()
        assert [m["topic"] for m in viewer.queue.get_nowait()] == ["sys.heartbeat.qa"]


async def test_a_slow_viewer_loses_whole_batches_counted_and_others_are_unaffected() -> None:
    # Given a viewer that never reads (queue of 2 batches) and one that does
    hub = LiveHub(None, queue_size=2)
    async with hub.subscribe() as slow, hub.subscribe() as fast:
        got = 0
        # When 5 batches of 3 messages are flushed
        for _ in range(5):
            for _ in range(3):
                hub.offer(env("a.b"))
            hub.flush()
            got += len(fast.queue.get_nowait())
        # Then the slow one holds 2 batches and 9 messages were dropped for it, counted
        assert slow.queue.qsize() == 2 and slow.dropped == 9 and hub.dropped == 9
        assert got == 15 and fast.dropped == 0


async def test_the_stream_reports_drops_then_the_batch_and_ends_on_close() -> None:
    hub = LiveHub(None, queue_size=1, batch_interval=0.01)
    await hub.start()
    async with hub.subscribe() as viewer:
        frames = hub.stream(viewer, keepalive=5.0)
        assert (await anext(frames)).startswith("event: hello")
        # Given two flushes while the viewer is not reading: the second batch is dropped
        hub.offer(env("a.one"))
        hub.flush()
        hub.offer(env("a.two"))
        hub.flush()
        # Then the stream first says how many were dropped, then sends what it kept
        dropped = await asyncio.wait_for(anext(frames), 2)
        assert dropped.startswith("event: dropped") and '"dropped": 1' in dropped
        batch = await asyncio.wait_for(anext(frames), 2)
        assert batch.startswith("event: messages")
        data = json.loads(batch.split("data: ", 1)[1])
        assert [m["topic"] for m in data] == ["a.one"]
        # When the hub closes, Then the stream ends
        await hub.close()
        remaining = [f async for f in frames]
        assert remaining == []


async def test_the_stream_pings_when_idle() -> None:
    hub = LiveHub(None)
    async with hub.subscribe() as viewer:
        frames = hub.stream(viewer, keepalive=0.05)
        await anext(frames)
        assert await asyncio.wait_for(anext(frames), 2) == ": ping\n\n"
    await hub.close()


class Acked:
    """A delivery that only needs acking."""

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope

    async def ack(self) -> None:
        pass


class BreaksOnce:
    """A bus whose first subscription fails after one message; later ones keep going."""

    def __init__(self) -> None:
        self.subscriptions = 0
        self.more = asyncio.Event()

    async def declare(self, spec: object) -> None:
        pass

    async def consume(self, queue: str, prefetch: int) -> AsyncIterator[Acked]:
        self.subscriptions += 1
        if self.subscriptions == 1:
            yield Acked(env("a.before"))
            raise BrokerUnavailable("connection lost")
        yield Acked(env("a.after"))
        await self.more.wait()


async def test_the_feed_resubscribes_when_its_subscription_fails() -> None:
    # Given a live feed on a bus whose first subscription fails after one message
    bus = BreaksOnce()
    hub = LiveHub(cast(Transport, bus), batch_interval=0.01)
    async with hub.subscribe() as viewer:
        await hub.start()
        try:
            # When the subscription fails, Then the hub subscribes again (after a short
            # backoff) and what the new subscription brings reaches the viewer
            topics: list[str] = []
            async with asyncio.timeout(5):
                while "a.after" not in topics:
                    topics += [m["topic"] for m in await viewer.queue.get()]
            assert topics == ["a.before", "a.after"] and bus.subscriptions == 2
            assert hub.connected.is_set() and hub.last_error is None
        finally:
            await hub.close()
