"""The outbox in front of a real RabbitMQ that goes away and comes back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from amqp_support import bodies
from stalwart.bus import QueueSpec, open_bus
from stalwart.bus.amqp import AmqpTransport
from stalwart.bus.outbox import OutboxTransport
from stalwart.config import load_settings
from stalwart.envelope import Envelope
from tcp_proxy import TcpProxy

pytestmark = pytest.mark.rabbitmq


async def test_an_outage_is_bridged_by_the_spool_and_drained_in_order(
    rabbitmq_url: str, proxy: TcpProxy, exchange: str, tmp_path: Path
) -> None:
    # Given a publisher whose broker link goes through a proxy, and a direct consumer
    inner = AmqpTransport(proxy.url(rabbitmq_url), exchange=exchange, confirm_timeout=1.0)
    outbox = OutboxTransport(
        inner, tmp_path / "outbox.db", publish_timeout=1.0, backoff_initial=0.05, backoff_cap=0.5
    )
    consumer = AmqpTransport(rabbitmq_url, exchange=exchange)
    await outbox.start()
    await consumer.start()
    try:
        await outbox.declare(QueueSpec("sink", ("data.#",)))
        await outbox.publish([Envelope.new("data.x", n) for n in range(0, 5)])
        # When the link is cut and the publisher carries on
        proxy.cut()
        started = time.monotonic()
        for n in range(5, 50, 5):
            await outbox.publish([Envelope.new("data.x", m) for m in range(n, n + 5)])
        publishing = time.monotonic() - started
        assert await outbox.pending() == 45
        # And the link comes back
        proxy.restore()
        await outbox.wait_drained(timeout=30.0)
        # Then publishing never waited longer than one confirm timeout, and the
        # consumer gets all 50, in the order they were published
        assert publishing < 10.0
        assert await bodies(consumer, "sink", 50, timeout=20.0) == list(range(50))
        assert await outbox.pending() == 0
    finally:
        await outbox.close()
        await consumer.close()


async def test_open_bus_wraps_network_buses_only(
    rabbitmq_url: str, tmp_path: Path, exchange: str
) -> None:
    # Given settings for RabbitMQ and for the embedded bus
    amqp = load_settings(
        env={},
        overrides={
            "bus.url": rabbitmq_url,
            "bus.exchange": exchange,
            "bus.outbox": str(tmp_path / "ob.db"),
        },
    )
    embedded = load_settings(env={}, overrides={"bus.url": f"sqlite:///{tmp_path}/bus.db"})
    # When the buses are opened
    network, local = open_bus(amqp), open_bus(embedded)
    # Then only the network one goes through the outbox, at bus.outbox
    assert isinstance(network, OutboxTransport)
    assert network.spool_path == str(tmp_path / "ob.db")
    assert isinstance(network.inner, AmqpTransport) and network.inner.exchange == exchange
    assert not isinstance(local, OutboxTransport)


async def test_a_short_lived_publisher_leaves_nothing_behind(
    rabbitmq_url: str, proxy: TcpProxy, exchange: str, tmp_path: Path
) -> None:
    # Given a spool holding one message from an earlier outage of the broker
    spool = tmp_path / "outbox.db"
    url = proxy.url(rabbitmq_url)
    proxy.cut()
    down = OutboxTransport(AmqpTransport(url, exchange=exchange, connect_timeout=1.0), spool)
    await down.start()
    await down.publish([Envelope.new("batch.report", "from the outage")])
    await down.close()
    proxy.restore()
    admin = AmqpTransport(rabbitmq_url, exchange=exchange)
    await admin.start()
    try:
        await admin.declare(QueueSpec("reports", ("batch.#",)))
        # When a batch tool starts, publishes one message and exits at once
        tool = OutboxTransport(AmqpTransport(url, exchange=exchange), spool)
        await tool.start()
        await tool.publish([Envelope.new("batch.report", "now")])
        await tool.close()
        # Then both messages reached the broker, the old one first, and the spool is empty
        assert await bodies(admin, "reports", 2) == ["from the outage", "now"]
        check = OutboxTransport(AmqpTransport(url, exchange=exchange), spool)
        await check.start()
        assert await check.pending() == 0
        await check.close()
    finally:
        await admin.close()
