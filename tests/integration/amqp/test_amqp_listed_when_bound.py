"""A queue is listed by ``queues()`` only once it is bound: whoever waits for a
service's queue there and then publishes (``stalwart up --demo`` before it feeds)
loses nothing. Before, the directory listed it before its bindings existed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from stalwart.bus import QueueSpec
from stalwart.bus.amqp import AmqpTransport
from stalwart.envelope import Envelope

Make = Callable[..., Awaitable[AmqpTransport]]


async def test_what_is_published_once_a_queue_is_listed_reaches_it(make_bus: Make) -> None:
    declarer, watcher = await make_bus(), await make_bus()
    for n in range(5):
        # Given a service declaring its queue, and a publisher watching the list of queues
        spec = QueueSpec(name=f"listed-{n}", patterns=(f"listed.{n}",))
        declaring = asyncio.create_task(declarer.declare(spec))
        while spec.name not in await watcher.queues():
            assert not declaring.done() or declaring.exception() is None
        # When it publishes the moment the queue is listed
        await watcher.publish([Envelope.new(f"listed.{n}", {"n": n})])
        await declaring
        # Then the message is in the queue
        stats = await declarer.queue_stats(spec.name)
        assert stats.ready == 1, f"round {n}: the message was routed nowhere"
