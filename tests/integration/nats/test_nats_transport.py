"""What the nats transport adds to the contract: TTL, routing corner cases,
foreign messages, configuration errors and reconnecting across servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import nats
import pytest
from nats.js.api import StreamConfig

from amqp_support import bodies
from stalwart.bus import QueueSpec
from stalwart.bus.nats import NatsTransport
from stalwart.envelope import Envelope
from stalwart.errors import BrokerUnavailable, ConfigError
from tcp_proxy import TcpProxy
from waiting import until

Make = Callable[..., Awaitable[NatsTransport]]


async def test_an_expired_message_is_dead_lettered_on_delivery(make_bus: Make) -> None:
    # Given a queue and a message with a 100 ms TTL that nobody takes in time
    bus = await make_bus()
    await bus.declare(QueueSpec("ttl", ("t.x",)))
    await bus.publish([Envelope.new("t.x", "late", ttl=0.1), Envelope.new("t.x", "fresh")])
    await asyncio.sleep(0.3)
    # When a consumer pulls
    # Then only the fresh one is handed out, and the late one is a dead letter saying why
    assert await bodies(bus, "ttl", 1) == ["fresh"]

    await until(
        lambda: bus.queue_stats("ttl"), 10.0, "one dead letter", accept=lambda s: s.dead == 1
    )
    (dead,) = await bus.dead_letters("ttl")
    assert dead.reason.startswith("expired")
    assert dead.envelope is not None and dead.envelope.body == "late"


async def test_overlapping_patterns_of_one_service_deliver_one_copy(make_bus: Make) -> None:
    # Given a service bound to two patterns that both match obs.a, and a '#' in the middle
    bus = await make_bus()
    await bus.declare(QueueSpec("both", ("obs.*", "obs.#", "site.#.done")))
    # When messages on matching and non-matching topics are published
    topics = ["obs.a", "obs", "site.done", "site.eu.x.done", "site.eu.failed"]
    await bus.publish([Envelope.new(t, t) for t in topics])
    # Then each matching topic is delivered once, and the other not at all
    iterator = bus.consume("both", 10)
    got = [await asyncio.wait_for(anext(iterator), 10.0) for _ in range(4)]
    for delivery in got:
        await delivery.ack()
    assert sorted(d.envelope.topic for d in got if d.envelope) == sorted(topics[:4])

    # the copies no filter of it owns are acknowledged unseen
    await until(
        lambda: bus.queue_stats("both"),
        10.0,
        "nothing ready or in flight",
        accept=lambda s: (s.ready, s.inflight) == (0, 0),
    )
    await iterator.aclose()  # type: ignore[attr-defined]


async def test_a_foreign_undecodable_body_is_delivered_with_its_error(
    make_bus: Make, nats_url: str, namespace: str
) -> None:
    # Given a service queue
    bus = await make_bus()
    await bus.declare(QueueSpec("foreign", ("f.#",)))
    # When a plain NATS client publishes bytes that are not an envelope
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(f"{namespace}.f.x", b"\xff not json")
    finally:
        await nc.close()
    # Then the delivery keeps the bytes and says why it did not decode
    iterator = bus.consume("foreign", 1)
    delivery = await asyncio.wait_for(anext(iterator), 10.0)
    assert delivery.envelope is None and delivery.error is not None
    assert delivery.raw == b"\xff not json"
    await delivery.dead("undecodable")
    (letter,) = await bus.dead_letters("foreign")
    assert letter.raw == b"\xff not json" and letter.reason == "undecodable"


async def test_an_unreachable_server_fails_fast_with_advice() -> None:
    # Given a URL where no server listens
    bus = NatsTransport("nats://127.0.0.1:1", connect_timeout=1.0)
    # When it starts, Then one clear error says what to do
    with pytest.raises(BrokerUnavailable, match="start nats-server with JetStream"):
        await bus.start()


@pytest.mark.parametrize("url", ["nats://h:4222?replicas=x", "nats://h:4222?replicas=7", ","])
def test_bad_urls_are_refused_with_advice(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        NatsTransport(url)
    assert "\n" not in str(caught.value)


async def test_a_server_list_skips_a_dead_server_and_survives_an_outage(
    make_bus: Make, proxy: TcpProxy
) -> None:
    # Given a transport on a list whose first server is down, the second behind a proxy
    bus = await make_bus(f"nats://127.0.0.1:1,nats://127.0.0.1:{proxy.port}")
    await bus.declare(QueueSpec("outage", ("o.x",)))
    await bus.publish([Envelope.new("o.x", "before")])
    # When the connection is cut and comes back
    proxy.cut()
    await until(lambda: not bus.connected, 5.0, "the bus to notice the cut")
    proxy.restore()
    await until(lambda: bus.connected, 15.0, "the bus to reconnect")
    # Then publishing and consuming go on, nothing lost
    await bus.publish([Envelope.new("o.x", "after")])
    assert await bodies(bus, "outage", 2, timeout=15.0) == ["before", "after"]


async def test_a_stream_of_the_same_name_with_other_settings_is_a_clear_error(
    nats_url: str, namespace: str, make_bus: Make
) -> None:
    # Given a stream named like the namespace, made by someone else for other subjects
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().add_stream(StreamConfig(name=namespace, subjects=["elsewhere.>"]))
    finally:
        await nc.close()
    # When the transport starts, Then it says which stream and what to do, on one line
    with pytest.raises(ConfigError) as caught:
        await make_bus()
    message = str(caught.value)
    assert namespace in message and "bus.exchange" in message and "\n" not in message


async def test_replicas_a_single_server_cannot_give_is_a_clear_error(make_bus: Make) -> None:
    # Given one JetStream server, When the transport asks for three replicas
    with pytest.raises(ConfigError) as caught:
        await make_bus(replicas=3)
    # Then the error says what to use instead, on one line
    assert "use replicas=1 on a single server" in str(caught.value)
    assert "\n" not in str(caught.value)
