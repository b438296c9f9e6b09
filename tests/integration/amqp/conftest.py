"""Fixtures for the amqp transport's own tests: a transport factory on a
test-private exchange (removed afterwards) and a fault-injecting proxy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from amqp_support import drop_exchange
from stalwart.bus.amqp import AmqpTransport
from tcp_proxy import TcpProxy, proxy_to

Make = Callable[..., Awaitable[AmqpTransport]]


@pytest.fixture
def exchange(unique: str) -> str:
    return f"test-amqp-{unique}"


@pytest.fixture
async def make_bus(rabbitmq_url: str, exchange: str) -> AsyncIterator[Make]:
    """``await make_bus(url=None, **options)``: a started AmqpTransport on the test exchange."""
    made: list[AmqpTransport] = []

    async def make(url: str | None = None, start: bool = True, **options: Any) -> AmqpTransport:
        bus = AmqpTransport(url or rabbitmq_url, exchange=exchange, **options)
        made.append(bus)
        if start:
            await bus.start()
        return bus

    try:
        yield make
    finally:
        for bus in reversed(made):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bus.close(), 30.0)
        await drop_exchange(rabbitmq_url, exchange)


@pytest.fixture
async def proxy(rabbitmq_url: str) -> AsyncIterator[TcpProxy]:
    async with proxy_to(rabbitmq_url) as tcp:
        yield tcp
