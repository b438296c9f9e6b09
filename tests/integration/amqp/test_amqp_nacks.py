"""A publish the broker nacks is PublishRefused, and the next one goes on a fresh channel.

On RabbitMQ 3.10 a channel that first published while its quorum queue's
leader moved was seen nacking every later publish for minutes, while new
channels were acked; so the transport never publishes again on a channel
that got a nack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aio_pika
import pytest

from stalwart.bus.amqp import AmqpTransport
from stalwart.envelope import Envelope
from stalwart.errors import PublishRefused

Make = Callable[..., Awaitable[AmqpTransport]]

pytestmark = pytest.mark.rabbitmq


async def test_a_nacked_publish_is_refused_and_its_channel_not_used_again(
    make_bus: Make, rabbitmq_url: str, exchange: str, unique: str
) -> None:
    # Given a queue that takes one message and refuses more (reject-publish), bound to full.#
    bus = await make_bus()
    conn = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await conn.channel()
        arguments = {"x-max-length": 1, "x-overflow": "reject-publish"}
        queue = await channel.declare_queue(
            f"test-nack-{unique}", auto_delete=True, arguments=arguments
        )
        await queue.bind(exchange, routing_key="full.#")
        await bus.publish([Envelope.new("full.one", {"n": 1})])
        used = await bus._connector.publish_channel(5.0)
        # When a second message reaches the full queue
        with pytest.raises(PublishRefused, match="refused a message"):
            await bus.publish([Envelope.new("full.two", {"n": 2})])
        # Then the channel that got the nack is closed, and publishing goes on on another
        assert used.is_closed
        await bus.publish([Envelope.new("other.topic", {"n": 3})])
        assert (await bus._connector.publish_channel(5.0)) is not used
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await conn.close()
