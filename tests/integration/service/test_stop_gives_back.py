"""An instance stopped past its grace (as an HA leader that lost its lease) gives back
the messages its cancelled handlers held, although its process and its bus connection
live on: another instance takes them at once, not after the delivery lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from amqp_support import drop_exchange
from stalwart.bus import Transport, open_bus
from stalwart.bus.amqp import AmqpTransport
from stalwart.config import Settings
from stalwart.envelope import Envelope
from stalwart.service import Context, Service, ServiceRunner
from waiting import until


@pytest.fixture(params=["sqlite", "amqp"])
async def transport(
    request: pytest.FixtureRequest, settings: Settings, unique: str
) -> AsyncIterator[Transport]:
    if request.param == "sqlite":
        bus: Transport = open_bus(settings)
    else:
        url = request.getfixturevalue("rabbitmq_url")
        bus = AmqpTransport(url, exchange=f"test-amqp-{unique}")
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()
        if request.param == "amqp":
            await drop_exchange(url, f"test-amqp-{unique}")


async def test_a_stopped_instance_gives_back_what_its_cancelled_handlers_held(
    transport: Transport, settings: Settings, unique: str
) -> None:
    # Given an instance whose handler hangs on a message
    started = asyncio.Event()
    hanging = Service(f"svc-{unique}")

    @hanging.handler(f"work.{unique}")
    async def hang(ctx: Context, body: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    first = ServiceRunner(hanging, transport, settings)
    await first.start()
    message = Envelope.new(f"work.{unique}", {"n": 1})
    await transport.publish([message])
    await asyncio.wait_for(started.wait(), 10.0)

    # When it is stopped past its grace while the bus connection stays open,
    # and another instance of the service starts
    await first.stop(grace=0.1)
    taken: list[str] = []
    again = Service(f"svc-{unique}")

    @again.handler(f"work.{unique}")
    async def take(ctx: Context, body: Any) -> None:
        taken.append(ctx.envelope.id)

    second = ServiceRunner(again, transport, settings)
    await second.start()
    try:
        # Then the other instance has the message well before the 30 s lease ran out
        assert settings.bus.lease >= 30.0
        await until(lambda: taken, 5.0, "the message given back")
        assert taken == [message.id]
    finally:
        await second.stop(grace=1.0)
