"""The transport contract: every bus backend must pass every test here.

Parametrised by ``transport_factory`` (tests/integration/conftest.py): the
embedded SQLite bus, RabbitMQ, NATS JetStream, and the outbox wrapping each
network broker (what ``open_bus`` gives a process on one). Each test reads Given / When / Then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from stalwart.bus import (
    Delivery,
    Encoded,
    QueueSpec,
    QueueStats,
    Transport,
    ack_all,
    consume_batches,
)
from stalwart.envelope import Envelope, encode
from stalwart.errors import MessageTooLarge, StalwartError, TransportClosed
from waiting import until

Factory = Callable[..., Awaitable[Transport]]
Take = Callable[..., Awaitable[list[Delivery]]]
Nothing = Callable[[Transport, str, float], Awaitable[bool]]


def _bodies(deliveries: list[Delivery]) -> list[object]:
    return [d.envelope.body for d in deliveries if d.envelope is not None]


def _topics(deliveries: list[Delivery]) -> set[str]:
    return {d.envelope.topic for d in deliveries if d.envelope is not None}


async def _loaded(
    factory: Factory, queue: str, topic: str, bodies: list[Any], **spec: Any
) -> Transport:
    """A started transport with ``queue`` bound to ``topic`` and ``bodies`` published on it."""
    bus = await factory()
    await bus.declare(QueueSpec(queue, (topic,), **spec))
    await bus.publish([Envelope.new(topic, body) for body in bodies])
    return bus


async def test_a_started_transport_is_connected_until_closed(transport_factory: Factory) -> None:
    # Given a started transport
    bus = await transport_factory()
    # Then it says it is connected, and once closed that it is not
    assert bus.connected is True
    await bus.close()
    assert bus.connected is False


async def test_routing_follows_topic_patterns(
    transport_factory: Factory, unique: str, take: Take
) -> None:
    # Given three queues bound with '*' and '#' patterns
    bus = await transport_factory()
    star, hashq, mid = f"star-{unique}", f"hash-{unique}", f"mid-{unique}"
    await bus.declare(QueueSpec(star, ("obs.*",)))
    await bus.declare(QueueSpec(hashq, ("obs.#",)))
    await bus.declare(QueueSpec(mid, ("site.*.done",)))
    # When messages on several topics are published
    topics = ["obs", "obs.a", "obs.a.b", "site.eu.done", "site.eu.x.done", "other.a"]
    await bus.publish([Envelope.new(t, {"t": t}) for t in topics])
    # Then each queue gets exactly the topics its patterns match
    assert _topics(await take(bus, star, 1)) == {"obs.a"}
    assert _topics(await take(bus, hashq, 3)) == {"obs", "obs.a", "obs.a.b"}
    assert _topics(await take(bus, mid, 1)) == {"site.eu.done"}
    for queue in (star, hashq, mid):
        stats = await bus.queue_stats(queue)
        assert stats.ready == 0


async def test_consumers_of_one_queue_compete(transport_factory: Factory, unique: str) -> None:
    # Given one queue and two consumers on it (as two instances of a service)
    queue = f"work-{unique}"
    await _loaded(transport_factory, queue, "job.run", [{"n": n} for n in range(40)])
    seen: dict[str, list[int]] = {"a": [], "b": []}
    done, both = asyncio.Event(), asyncio.Event()

    async def worker(name: str) -> None:
        bus = await transport_factory()
        async for delivery in bus.consume(queue, 1):
            assert delivery.envelope is not None
            seen[name].append(delivery.envelope.body["n"])
            if seen["a"] and seen["b"]:
                both.set()
            # Holding the first delivery (prefetch 1) leaves the rest to the other
            # consumer, however late it starts; then both take turns.
            await asyncio.wait_for(both.wait(), 30.0)
            await delivery.ack()
            if len(seen["a"]) + len(seen["b"]) >= 40:
                done.set()

    # When both consume until everything is processed
    tasks = [asyncio.create_task(worker(name)) for name in seen]
    try:
        await asyncio.wait_for(done.wait(), 30.0)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # Then every message went to exactly one of them, and both had work
    together = seen["a"] + seen["b"]
    assert sorted(together) == list(range(40))
    assert seen["a"] and seen["b"]


async def test_every_bound_queue_gets_its_own_copy(
    transport_factory: Factory, unique: str, take: Take
) -> None:
    # Given two services bound to the same topic
    bus = await transport_factory()
    first, second = f"first-{unique}", f"second-{unique}"
    await bus.declare(QueueSpec(first, ("news.#",)))
    await bus.declare(QueueSpec(second, ("news.#",)))
    # When one message is published
    await bus.publish([Envelope.new("news.flash", {"x": 1})])
    # Then each queue delivers it once
    one = await take(bus, first, 1)
    two = await take(bus, second, 1)
    assert one[0].envelope is not None and two[0].envelope is not None
    assert one[0].envelope.id == two[0].envelope.id


async def test_one_producers_order_is_kept_within_a_queue(
    transport_factory: Factory, unique: str, take: Take
) -> None:
    # Given a queue and one producer publishing singles and batches in sequence,
    # synced or not (a final state goes out unsynced, then its delivery is acked)
    bus = await transport_factory()
    queue = f"order-{unique}"
    await bus.declare(QueueSpec(queue, ("seq.#",)))
    n = 0
    for turn, size in enumerate((1, 5, 1, 20, 3, 1, 9)):
        await bus.publish([Envelope.new("seq.x", n + i) for i in range(size)], sync=turn % 2 == 0)
        n += size
    # When a single consumer reads them
    got = await take(bus, queue, n, prefetch=7)
    # Then they come in publication order
    assert _bodies(got) == list(range(n))


async def _next(iterator: AsyncIterator[Delivery], timeout: float = 10.0) -> Delivery:
    return await asyncio.wait_for(anext(iterator), timeout)


async def test_retry_redelivers_after_the_delay_with_the_next_attempt(
    transport_factory: Factory, unique: str
) -> None:
    # Given a delivered message
    queue = f"retry-{unique}"
    bus = await _loaded(transport_factory, queue, "r.x", ["payload"], max_attempts=3)
    deliveries = bus.consume(queue, 1)
    first = await _next(deliveries)
    assert first.attempt == 1
    # When its handler asks for a retry in 0.5 s
    started = time.monotonic()
    assert await first.retry(0.5, "downstream busy") is True
    second = await _next(deliveries)
    waited = time.monotonic() - started
    # Then it comes back after the delay, as attempt 2, with the same message
    assert second.attempt == 2
    assert waited >= 0.4
    assert second.envelope is not None and second.envelope.body == "payload"
    assert await second.retry(None, "again") is True  # None: the queue's backoff
    third = await _next(deliveries)
    assert third.attempt == 3
    await third.ack()


async def test_dead_letters_after_max_attempts_then_requeue_and_purge(
    transport_factory: Factory, unique: str
) -> None:
    # Given a queue allowing two attempts
    queue = f"dlq-{unique}"
    bus = await _loaded(
        transport_factory, queue, "d.x", [{"poison": True}], max_attempts=2, retry_initial=0.05
    )
    deliveries = bus.consume(queue, 1)
    # When both attempts fail
    one = await _next(deliveries)
    assert await one.retry(0.0, "first failure") is True
    two = await _next(deliveries)
    assert await two.retry(0.0, "second failure") is False
    # Then the message is a dead letter with the reason, and nothing is ready
    await until(
        lambda: bus.dead_letters(queue),
        10.0,
        "one dead letter",
        accept=lambda letters: len(letters) == 1,
    )
    (letter,) = await bus.dead_letters(queue)
    assert "second failure" in letter.reason
    assert letter.attempts == 2
    assert letter.envelope is not None and letter.envelope.body == {"poison": True}
    # When it is requeued it is delivered again as a fresh first attempt
    assert await bus.requeue_dead(queue) == 1
    again = await _next(deliveries)
    assert again.attempt == 1
    # And when it is dead-lettered at once, purge removes it
    await again.dead("operator gave up")
    await until(
        lambda: bus.dead_letters(queue),
        10.0,
        "one dead letter",
        accept=lambda letters: len(letters) == 1,
    )
    (letter,) = await bus.dead_letters(queue)
    assert "operator gave up" in letter.reason
    assert await bus.purge_dead(queue, [letter.key]) == 1
    assert await bus.dead_letters(queue) == []


async def test_an_unrenewed_lease_expires_and_the_message_comes_back(
    transport_factory: Factory, unique: str, take: Take
) -> None:
    # Given a queue with a 1 s lease and a consumer that takes a message and stalls
    queue = f"lease-{unique}"
    stalled = await _loaded(transport_factory, queue, "l.x", ["work"], lease=1.0)
    (held,) = await take(stalled, queue, 1, ack=False)
    # When another consumer waits past the lease
    other = await transport_factory()
    (back,) = await take(other, queue, 1, timeout=10.0)
    # Then it gets the message as the next attempt
    assert back.attempt == 2
    assert back.envelope is not None and held.envelope is not None
    assert back.envelope.id == held.envelope.id


async def test_a_released_delivery_comes_back_at_once_with_the_same_attempt(
    transport_factory: Factory, unique: str, take: Take
) -> None:
    # Given a consumer holding a message under a long lease
    queue = f"release-{unique}"
    holder = await _loaded(transport_factory, queue, "r.x", ["unwanted"], lease=60.0)
    deliveries = holder.consume(queue, 1)
    held = await anext(deliveries)
    # When it stops consuming and gives the message back unprocessed (stopping first,
    # so that the broker does not hand it straight back to this consumer)
    await deliveries.aclose()  # type: ignore[attr-defined]
    await held.release()
    # Then another consumer gets it well before the lease ends, the attempt not counted
    other = await transport_factory()
    (back,) = await take(other, queue, 1, timeout=5.0)
    assert back.attempt == held.attempt
    assert back.envelope is not None and held.envelope is not None
    assert back.envelope.id == held.envelope.id


async def test_extending_the_lease_prevents_redelivery(
    transport_factory: Factory, unique: str, take: Take, nothing_within: Nothing
) -> None:
    # Given a consumer holding a message with a 1 s lease
    queue = f"extend-{unique}"
    holder = await _loaded(transport_factory, queue, "e.x", ["long job"], lease=1.0)
    (held,) = await take(holder, queue, 1, ack=False)

    async def keep_renewing() -> None:
        while True:
            await held.extend(1.0)
            await asyncio.sleep(0.3)

    # When it keeps renewing for well past the lease
    renewer = asyncio.create_task(keep_renewing())
    other = await transport_factory()
    try:
        # Then nobody else gets the message meanwhile
        assert await nothing_within(other, queue, 2.5)
    finally:
        renewer.cancel()
        await asyncio.gather(renewer, return_exceptions=True)
    await held.ack()
    assert await nothing_within(other, queue, 1.5)


async def test_an_oversized_envelope_refuses_the_whole_batch(
    transport_factory: Factory, unique: str, take: Take
) -> None:
    # Given a bus with a 4 KiB message limit
    bus = await transport_factory(max_message_size=4096)
    queue = f"size-{unique}"
    await bus.declare(QueueSpec(queue, ("s.#",)))
    # When a batch holds one small and one oversized envelope
    batch = [Envelope.new("s.small", "ok"), Envelope.new("s.big", "x" * 10_000)]
    with pytest.raises(MessageTooLarge) as caught:
        await bus.publish(batch)
    # Then the error says what to do, and nothing of the batch was published
    assert "max_message_size" in str(caught.value)
    await bus.publish([Envelope.new("s.marker", "after")])
    (first,) = await take(bus, queue, 1)
    assert first.envelope is not None and first.envelope.topic == "s.marker"


async def test_already_encoded_messages_go_out_byte_for_byte(
    transport_factory: Factory, unique: str, take: Take
) -> None:
    # Given a queue and envelopes already encoded (as an outbox spools them)
    bus = await transport_factory(max_message_size=4096)
    queue = f"encoded-{unique}"
    await bus.declare(QueueSpec(queue, ("enc.#",)))
    envelope = Envelope.new("enc.x", {"n": 1}, correlation_id="c-1")
    data = encode(envelope)
    # When one too large for the limit is in a batch, nothing of it is published
    big = Envelope.new("enc.big", "x" * 10_000)
    with pytest.raises(MessageTooLarge):
        await bus.publish_encoded([Encoded(envelope.id, "enc.x", data), _encoded(big)])
    # And when they are published on their own
    await bus.publish_encoded([Encoded(envelope.id, "enc.x", data)])
    # Then the consumer gets the very bytes, which decode to the same envelope
    (got,) = await take(bus, queue, 1)
    assert got.raw == data
    assert got.envelope == envelope


def _encoded(envelope: Envelope) -> Encoded:
    return Encoded(envelope.id, envelope.topic, encode(envelope, 10**6))


async def test_queue_stats_count_ready_and_inflight(
    transport_factory: Factory, unique: str
) -> None:
    # Given a queue with three messages, one of them taken and not settled
    queue = f"stats-{unique}"
    bus = await _loaded(transport_factory, queue, "st.x", list(range(3)))
    iterator = bus.consume(queue, 1)
    held = await asyncio.wait_for(anext(iterator), 10.0)

    def counts_are(ready: int, inflight: int) -> Callable[[QueueStats], bool]:
        return lambda s: (s.ready, s.inflight, s.dead) == (ready, inflight, 0)

    # Then the stats show two ready and one in flight
    await until(
        lambda: bus.queue_stats(queue), 10.0, "2 ready, 1 in flight", accept=counts_are(2, 1)
    )
    assert queue in await bus.queues()
    # When it is acked, one in flight fewer
    await held.ack()
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        await closer()
    await until(
        lambda: bus.queue_stats(queue), 10.0, "2 ready, 0 in flight", accept=counts_are(2, 0)
    )


async def test_an_ephemeral_queue_goes_away_on_close(
    transport_factory: Factory, unique: str, take: Take
) -> None:
    # Given an ephemeral queue (as `stalwart tail` uses) receiving messages
    tail = await transport_factory()
    queue = f"tail-{unique}"
    await tail.declare(QueueSpec(queue, ("#",), ephemeral=True))
    await tail.publish([Envelope.new("any.thing", 1)])
    assert len(await take(tail, queue, 1)) == 1
    assert queue not in await tail.queues()
    # When its transport closes
    await tail.close()
    # Then the queue no longer exists for anyone
    other = await transport_factory()
    with pytest.raises(StalwartError):
        await other.queue_stats(queue)


async def test_close_ends_consume_and_later_calls_fail_clearly(
    transport_factory: Factory, unique: str
) -> None:
    # Given a consumer waiting on an empty queue
    bus = await transport_factory()
    queue = f"close-{unique}"
    await bus.declare(QueueSpec(queue, ("c.x",)))
    ended = asyncio.Event()

    async def consumer() -> None:
        async for _ in bus.consume(queue, 5):
            pass
        ended.set()

    task = asyncio.create_task(consumer())
    await asyncio.sleep(0.2)  # let it start waiting
    # When the transport closes
    await bus.close()
    # Then the iterator ends and publishing raises TransportClosed
    await asyncio.wait_for(ended.wait(), 10.0)
    await task
    with pytest.raises(TransportClosed):
        await bus.publish([Envelope.new("c.x", 1)])


async def test_close_releases_unsettled_deliveries_promptly(
    transport_factory: Factory, unique: str, take: Take
) -> None:
    # Given a consumer holding a message under a long lease
    queue = f"release-{unique}"
    first = await _loaded(transport_factory, queue, "rel.x", ["keep me"], lease=60.0)
    await take(first, queue, 1, ack=False)
    # When that transport closes without settling
    await first.close()
    # Then another consumer gets it well before the lease would have run out
    other = await transport_factory()
    (back,) = await take(other, queue, 1, timeout=10.0)
    assert back.envelope is not None and back.envelope.body == "keep me"


async def test_stopping_the_iterator_lets_handed_out_work_finish_and_returns_the_rest(
    transport_factory: Factory, unique: str, take: Take
) -> None:
    # Given a consumer that prefetched three messages and handed out one
    queue = f"graceful-{unique}"
    bus = await _loaded(transport_factory, queue, "g.x", list(range(3)), lease=60.0)
    deliveries = bus.consume(queue, 3)
    first = await _next(deliveries)
    # When the iterator is closed (a graceful stop) and the handler then acks
    closer = getattr(deliveries, "aclose", None)
    if closer is not None:
        await closer()
    await first.ack()
    # Then the two not handed out come back at once, long before the lease, and only them
    other = await transport_factory()
    rest = await take(other, queue, 2, timeout=10.0)
    assert first.envelope is not None
    assert sorted(_bodies(rest)) == sorted({0, 1, 2} - {first.envelope.body})


async def test_batches_hand_out_every_message_once_and_ack_all_settles_them(
    transport_factory: Factory, unique: str, nothing_within: Nothing
) -> None:
    # Given 120 messages on a queue
    queue = f"batches-{unique}"
    bus = await _loaded(transport_factory, queue, "b.x", list(range(120)), lease=60.0)
    # When a bulk consumer takes them in batches of at most 50 unsettled, acking each batch
    got: list[object] = []
    sizes: list[int] = []
    batches = consume_batches(bus, queue, 50)
    try:
        while len(got) < 120:
            batch = await asyncio.wait_for(anext(batches), 10.0)
            sizes.append(len(batch))
            got.extend(_bodies(list(batch)))
            await ack_all(bus, batch)
    finally:
        await batches.aclose()  # type: ignore[attr-defined]
    # Then every message came once, in batches within the prefetch, most more than one
    assert sorted(got) == list(range(120))  # type: ignore[type-var]
    assert max(sizes) <= 50 and len(sizes) < 120
    # And the acks took them off the queue: nothing comes back
    await until(lambda: bus.queue_stats(queue), 10.0, "an empty queue", accept=_empty)
    assert await nothing_within(bus, queue, 1.0)


def _empty(stats: QueueStats) -> bool:
    return (stats.ready, stats.inflight, stats.dead) == (0, 0, 0)


async def test_a_batch_not_acked_comes_back_when_the_consumer_closes(
    transport_factory: Factory, unique: str, take: Take
) -> None:
    # Given a bulk consumer holding a batch it did not ack
    queue = f"batch-held-{unique}"
    first = await _loaded(transport_factory, queue, "bh.x", list(range(5)), lease=60.0)
    batches = consume_batches(first, queue, 5)
    held: list[object] = []
    while len(held) < 5:
        held.extend(_bodies(list(await asyncio.wait_for(anext(batches), 10.0))))
    # When its transport closes
    await batches.aclose()  # type: ignore[attr-defined]
    await first.close()
    # Then another consumer gets all of them, well before the lease runs out
    other = await transport_factory()
    back = await take(other, queue, 5, timeout=10.0)
    assert sorted(_bodies(back)) == list(range(5))  # type: ignore[type-var]
