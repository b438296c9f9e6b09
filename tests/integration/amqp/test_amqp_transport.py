"""The amqp transport on a real RabbitMQ: layout, wire properties, retries,
dead letters, expiry, foreign bodies, failover, reconnect and errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import aio_pika
import pytest

from stalwart.bus import Delivery, QueueSpec, Transport
from stalwart.bus.amqp import AmqpTransport
from stalwart.bus.amqp import _delivery as amqp_delivery
from stalwart.bus.amqp._names import dead_queue, wait_queue, work_queue
from stalwart.envelope import Envelope
from stalwart.errors import BrokerUnavailable, ConfigError, MessageTooLarge, TransportError
from tcp_proxy import TcpProxy
from waiting import until

Make = Callable[..., Awaitable[AmqpTransport]]

pytestmark = pytest.mark.rabbitmq


async def _next(bus: Transport, queue: str, timeout: float = 10.0) -> Delivery:
    iterator = bus.consume(queue, 10)
    try:
        async with asyncio.timeout(timeout):
            async for delivery in iterator:
                return delivery
    finally:
        await iterator.aclose()  # type: ignore[attr-defined]
    raise AssertionError("consume ended without a delivery")


async def test_envelope_fields_are_mirrored_in_amqp_properties(
    make_bus: Make, rabbitmq_url: str, exchange: str, unique: str
) -> None:
    # Given a declared service queue
    bus = await make_bus()
    await bus.declare(QueueSpec("props", ("obs.#",)))
    # When an envelope with a TTL, correlation and reply-to is published
    env = Envelope.new(
        "obs.done", {"x": 1}, kind="Done", ttl=60.0, correlation_id="c1", reply_to="r.t"
    )
    await bus.publish([env])
    # Then a plain AMQP client sees it persistent, JSON, with the mirrored properties
    conn = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await conn.channel()
        queue = await channel.get_queue(work_queue(exchange, "props"), ensure=False)
        message = await queue.get(timeout=5.0)
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.content_type == "application/json"
        assert (message.message_id, message.type) == (env.id, "Done")
        assert (message.correlation_id, message.reply_to) == ("c1", "r.t")
        assert message.routing_key == "obs.done"
        assert 0 < int(message.expiration or 0) <= 60_000
        assert json.loads(message.body)["v"] == 1
        await message.ack()
    finally:
        await conn.close()


async def test_retries_count_attempts_and_end_in_the_dead_letter_queue(make_bus: Make) -> None:
    # Given a queue allowing 3 attempts with short backoff
    bus = await make_bus()
    spec = QueueSpec("poison", ("p.x",), max_attempts=3, retry_initial=0.05, retry_max=0.1)
    await bus.declare(spec)
    await bus.publish([Envelope.new("p.x", "bad")])
    # When every attempt fails
    attempts = []
    for _ in range(3):
        delivery = await _next(bus, "poison")
        attempts.append(delivery.attempt)
        kept = await delivery.retry(None, "handler raised ValueError")
    # Then attempts were 1, 2, 3, the last retry dead-lettered it, with the reason
    assert attempts == [1, 2, 3]
    assert kept is False
    dead = await bus.dead_letters("poison")
    assert len(dead) == 1
    assert "handler raised ValueError" in dead[0].reason
    assert dead[0].attempts == 3 and dead[0].envelope is not None
    stats = await bus.queue_stats("poison")
    assert (stats.ready, stats.dead) == (0, 1)
    # And requeueing brings it back at attempt 1
    assert await bus.requeue_dead("poison", [dead[0].key]) == 1
    back = await _next(bus, "poison")
    assert back.attempt == 1 and back.envelope is not None and back.envelope.body == "bad"
    await back.ack()
    assert (await bus.queue_stats("poison")).dead == 0


async def test_an_explicit_delay_waits_in_a_wait_queue(
    make_bus: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a delivered message, and retries of a second or more not held by the consumer
    monkeypatch.setattr(amqp_delivery, "HOLD_RETRIES_UNDER", 0.5)
    bus = await make_bus()
    await bus.declare(QueueSpec("delayed", ("d.x",)))
    await bus.publish([Envelope.new("d.x", 1)])
    first = await _next(bus, "delayed")
    # When it is retried with a 1 s delay
    started = time.monotonic()
    assert await first.retry(1.0, "not yet")
    # Then it is counted as delayed and comes back after about a second
    assert (await bus.queue_stats("delayed")).delayed == 1
    again = await _next(bus, "delayed")
    assert time.monotonic() - started >= 0.9
    assert again.attempt == 2
    await again.ack()


async def _exists(rabbitmq_url: str, queue: str) -> bool:
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(queue, passive=True)
        return True
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        await connection.close()


async def test_a_short_retry_is_held_by_the_consumer_not_dead_lettered_by_the_broker(
    make_bus: Make, rabbitmq_url: str, exchange: str
) -> None:
    # Given a delivered message
    bus = await make_bus()
    await bus.declare(QueueSpec("held", ("h.x",)))
    await bus.publish([Envelope.new("h.x", 1)])
    first = await _next(bus, "held")
    # When it is retried with a delay shorter than HOLD_RETRIES_UNDER
    started = time.monotonic()
    assert await first.retry(0.8, "not yet")
    # Then the consumer holds it (not delayed in the broker) and no wait queue is made
    stats = await bus.queue_stats("held")
    assert (stats.ready, stats.delayed) == (0, 0)
    assert not await _exists(rabbitmq_url, wait_queue(exchange, "held", 800))
    # And it comes back after the delay, as the next attempt
    again = await _next(bus, "held")
    assert time.monotonic() - started >= 0.75 and again.attempt == 2
    await again.ack()


async def test_a_held_retry_of_a_closed_consumer_is_given_back_not_lost(make_bus: Make) -> None:
    # Given a message retried with a short delay by a consumer that then stops
    bus = await make_bus()
    await bus.declare(QueueSpec("held-closed", ("hc.x",)))
    await bus.publish([Envelope.new("hc.x", 1)])
    first = await _next(bus, "held-closed")
    assert await first.retry(5.0, "not yet")
    await bus.close()
    # Then another consumer gets it, without waiting out the delay
    other = await make_bus()
    again = await _next(other, "held-closed", timeout=4.0)
    assert again.envelope is not None and again.envelope.body == 1
    await again.ack()


async def test_an_expired_message_is_visible_in_the_dead_letter_queue(make_bus: Make) -> None:
    # Given a queue nobody consumes
    bus = await make_bus()
    await bus.declare(QueueSpec("ttl", ("t.x",)))
    # When a message with a 100 ms TTL is published and not consumed in time
    await bus.publish([Envelope.new("t.x", "late", ttl=0.1)])

    # Then the broker dead-letters it with reason "expired" rather than dropping it
    await until(
        lambda: bus.queue_stats("ttl"), 10.0, "one dead letter", accept=lambda s: s.dead == 1
    )
    (dead,) = await bus.dead_letters("ttl")
    assert dead.reason == "broker: expired"
    assert dead.envelope is not None and dead.envelope.body == "late"


async def test_a_foreign_undecodable_body_is_delivered_with_its_error(
    make_bus: Make, rabbitmq_url: str, exchange: str
) -> None:
    # Given a service queue
    bus = await make_bus()
    await bus.declare(QueueSpec("foreign", ("f.#",)))
    # When a foreign client publishes bytes that are not an envelope
    conn = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await conn.channel()
        topic = await channel.get_exchange(exchange)
        await topic.publish(aio_pika.Message(b"\xff not json"), routing_key="f.x")
    finally:
        await conn.close()
    # Then the delivery keeps the raw bytes and says why it did not decode
    delivery = await _next(bus, "foreign")
    assert delivery.envelope is None and delivery.error is not None
    assert delivery.raw == b"\xff not json"
    # And it can be dead-lettered without loss
    await delivery.dead(str(delivery.error))
    (dead,) = await bus.dead_letters("foreign")
    assert dead.raw == b"\xff not json" and dead.envelope is None


async def test_the_first_connect_fails_fast_and_masks_the_password(make_bus: Make) -> None:
    # Given a URL with a password to a port where nothing listens
    bus = await make_bus("amqp://user:s3cret@127.0.0.1:1/", start=False, connect_timeout=2.0)
    # When it starts
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        await bus.start()
    # Then it fails at once, and neither the error nor repr shows the password
    assert time.monotonic() - started < 5.0
    assert "s3cret" not in str(caught.value) and "s3cret" not in repr(bus)
    assert "user:***@127.0.0.1:1" in bus.url


async def test_a_node_list_fails_over_to_a_live_node(make_bus: Make, rabbitmq_url: str) -> None:
    # Given a node list whose first node is down
    bus = await make_bus(f"amqp://guest:guest@127.0.0.1:1/,{rabbitmq_url}", connect_timeout=2.0)
    # When it is used
    await bus.declare(QueueSpec("failover", ("fo.x",)))
    await bus.publish([Envelope.new("fo.x", 1)])
    # Then the live node serves it
    delivery = await _next(bus, "failover")
    await delivery.ack()


async def test_a_consumer_survives_a_lost_connection(
    make_bus: Make, proxy: TcpProxy, rabbitmq_url: str
) -> None:
    # Given a consumer connected through a proxy, and a publisher connected directly
    bus = await make_bus(proxy.url(rabbitmq_url), confirm_timeout=5.0)
    publisher = await make_bus()
    await bus.declare(QueueSpec("survivor", ("s.x",)))
    got: list[object] = []

    async def consume() -> None:
        async for delivery in bus.consume("survivor", 5):
            if delivery.envelope is not None:
                got.append(delivery.envelope.body)
            await delivery.ack()

    task = asyncio.create_task(consume())
    try:
        await publisher.publish([Envelope.new("s.x", "before")])
        await until(lambda: got, 10.0, "'before' consumed", accept=lambda g: g == ["before"])
        # When the connection is cut, messages are published meanwhile, and it comes back
        proxy.cut()
        await publisher.publish([Envelope.new("s.x", "during")])
        await asyncio.sleep(0.3)
        proxy.restore()
        # Then the consumer is restored by itself and gets what was published meanwhile
        await until(lambda: got, 20.0, "'during' after the cut", accept=lambda g: "during" in g)
        await publisher.publish([Envelope.new("s.x", "after")])
        await until(lambda: got, 10.0, "'after' consumed", accept=lambda g: "after" in g)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_publishing_while_disconnected_raises_broker_unavailable(
    make_bus: Make, proxy: TcpProxy, rabbitmq_url: str
) -> None:
    # Given a transport whose connection is cut and stays down
    bus = await make_bus(proxy.url(rabbitmq_url), confirm_timeout=0.5)
    await bus.declare(QueueSpec("down", ("dn.x",)))
    proxy.cut()
    # When it publishes
    # Then it raises BrokerUnavailable once the confirm timeout has passed
    with pytest.raises(BrokerUnavailable):
        await bus.publish([Envelope.new("dn.x", 1)])


async def test_redeclaring_updates_bindings(make_bus: Make) -> None:
    # Given a queue bound to a.x
    bus = await make_bus()
    await bus.declare(QueueSpec("rebind", ("a.x",)))
    # When it is declared again bound to b.x only
    await bus.declare(QueueSpec("rebind", ("b.x",)))
    await bus.publish([Envelope.new("a.x", "old"), Envelope.new("b.x", "new")])
    # Then only b.x is routed to it, and the directory lists it once
    delivery = await _next(bus, "rebind")
    assert delivery.envelope is not None and delivery.envelope.body == "new"
    await delivery.ack()
    assert (await bus.queue_stats("rebind")).ready == 0
    assert await bus.queues() == ["rebind"]


async def test_a_queue_of_another_type_is_a_clear_config_error(
    make_bus: Make, rabbitmq_url: str, exchange: str
) -> None:
    # Given a classic queue already on the broker under the service's name
    conn = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await conn.channel()
        await channel.declare_queue(work_queue(exchange, "mixed"), durable=True)
    finally:
        await conn.close()
    bus = await make_bus(queue_type="quorum")
    # When the quorum transport declares that service
    # Then it says how to fix it
    with pytest.raises(ConfigError, match="queue_type"):
        await bus.declare(QueueSpec("mixed", ("m.x",)))


async def test_bad_input_is_refused_with_nothing_published(make_bus: Make) -> None:
    # Given a transport with a 1 KiB limit
    bus = await make_bus(max_message_size=1024)
    await bus.declare(QueueSpec("limits", ("l.x",)))
    # When a batch holds an oversized envelope
    with pytest.raises(MessageTooLarge):
        await bus.publish([Envelope.new("l.x", "ok"), Envelope.new("l.x", "x" * 4096)])
    # Then nothing of the batch was published, and an undeclared queue is a clear error
    assert (await bus.queue_stats("limits")).ready == 0
    with pytest.raises(TransportError, match="declare"):
        await _next(bus, "never-declared", timeout=5.0)
    with pytest.raises(ConfigError):
        AmqpTransport("amqp://guest:guest@127.0.0.1/", queue_type="stream")  # type: ignore[arg-type]


async def test_dead_letters_are_browsed_without_being_consumed(make_bus: Make) -> None:
    # Given two dead letters
    bus = await make_bus()
    await bus.declare(QueueSpec("browse", ("b.x",)))
    await bus.publish([Envelope.new("b.x", n) for n in range(2)])
    for _ in range(2):
        delivery = await _next(bus, "browse")
        await delivery.dead("bad input")
    # When they are listed twice and one is purged by key
    first = await bus.dead_letters("browse")
    second = await bus.dead_letters("browse")
    purged = await bus.purge_dead("browse", [first[0].key])
    # Then browsing did not remove them, and only the purged one is gone
    assert {d.key for d in first} == {d.key for d in second} and len(first) == 2
    assert purged == 1
    assert [d.key for d in await bus.dead_letters("browse")] == [first[1].key]
    assert await bus.purge_dead("browse") == 1
    assert dead_queue("x", "browse") == "x.browse.dead"
