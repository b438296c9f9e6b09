"""(d) What a foreign publisher can do to an idempotent service: the same id published
twice at once (the handler runs once), and an id over 64 characters followed by good
messages (the good ones all end consumed, the bad one rejected with a reason).

The messages are published as a plain AMQP client would (aio-pika, raw JSON), on the
shared RabbitMQ under an exchange of this test's own.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest
from harness import Counts, System, rejections, scale, settle

from amqp_support import private_exchange

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture
async def exchange(rabbitmq_url: str, unique: str) -> AsyncIterator[str]:
    async with private_exchange(rabbitmq_url, "chaos", unique) as name:
        yield name


def _envelope(message_id: str, n: int) -> dict[str, Any]:
    created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {"v": 1, "id": message_id, "topic": "chaos.item", "created_at": created, "body": n}


async def _publish_raw(url: str, exchange: str, envelopes: list[dict[str, Any]]) -> None:
    """Publish (confirmed, persistent) each envelope's JSON, back to back, in this order."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange)
        for envelope in envelopes:
            message = aio_pika.Message(
                json.dumps(envelope).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=envelope["id"],
            )
            await target.publish(message, routing_key=envelope["topic"])
    finally:
        await connection.close()


@pytest.mark.timeout(scale(150, 600))
async def test_duplicates_and_a_too_long_id_from_a_foreign_publisher(
    exchange: str,
    rabbitmq_url: str,
    postgres_url: str,
    make_system: Callable[..., System],
    unique: str,
) -> None:
    # Given two consumer processes of an idempotent service whose handler takes 0.2 s
    started = time.monotonic()
    service = f"foreign-{unique}"
    system = make_system(rabbitmq_url, postgres_url, service, exchange=exchange)
    system.env["CHAOS_DELAY"] = "0.2"
    await system.prepare()
    await system.consumers(2)
    # When a foreign client publishes every id of a first set twice, back to back, then a
    # message with a 65-character id, then a second set of good messages
    twice = [_envelope(f"{unique}-t-{n:06d}", n) for n in range(scale(20, 200))]
    good = [_envelope(f"{unique}-g-{n:06d}", n) for n in range(scale(50, 1_000))]
    bad = _envelope("x" * 65, -1)
    await _publish_raw(rabbitmq_url, exchange, [*(e for e in twice for _ in "ab"), bad, *good])
    # Then each id of both sets has one effect and ends consumed ...
    found: dict[str, Counts] = {}
    for name, prefix, sent in (("same id twice", "t", twice), ("after a long id", "g", good)):
        found[name] = await settle(
            postgres_url, service, f"{unique}-{prefix}", len(sent), scale(60, 180), quiet=2.0
        )
    # ... and the message with the too-long id ends rejected with a reason
    refused = await rejections(postgres_url, service)
    seconds = time.monotonic() - started
    print(*(counts.line(name, seconds) for name, counts in found.items()), sep="\n")
    print(f"[too-long id] rejected: {refused}")
    for name, counts in found.items():
        assert counts.effectively_once(), counts.line(name, seconds)
    assert len(refused) == 1 and refused[0][1], f"not one rejection with a reason: {refused}"
