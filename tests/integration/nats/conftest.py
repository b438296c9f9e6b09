"""Fixtures for the nats transport's own tests: a transport factory on a
test-private namespace (its streams removed afterwards) and a proxy to cut."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from nats_support import drop_streams
from stalwart.bus.nats import NatsTransport
from tcp_proxy import TcpProxy, proxy_to

Make = Callable[..., Awaitable[NatsTransport]]


@pytest.fixture
def namespace(unique: str) -> str:
    return f"test-nats-{unique}"


@pytest.fixture
async def make_bus(nats_url: str, namespace: str) -> AsyncIterator[Make]:
    """``await make_bus(url=None, **options)``: a started NatsTransport on the test namespace."""
    made: list[NatsTransport] = []

    async def make(url: str | None = None, **options: Any) -> NatsTransport:
        bus = NatsTransport(url or nats_url, exchange=namespace, **options)
        made.append(bus)
        await bus.start()
        return bus

    try:
        yield make
    finally:
        for bus in reversed(made):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bus.close(), 30.0)
        await drop_streams(nats_url, namespace)


@pytest.fixture
async def proxy(nats_url: str) -> AsyncIterator[TcpProxy]:
    async with proxy_to(nats_url, default_port=4222) as tcp:
        yield tcp
