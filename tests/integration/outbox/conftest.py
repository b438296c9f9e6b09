"""Fixtures for the outbox over a real RabbitMQ reached through a cutting proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from amqp_support import private_exchange
from tcp_proxy import TcpProxy, proxy_to


@pytest.fixture
async def proxy(rabbitmq_url: str) -> AsyncIterator[TcpProxy]:
    async with proxy_to(rabbitmq_url) as tcp:
        yield tcp


@pytest.fixture
async def exchange(rabbitmq_url: str, unique: str) -> AsyncIterator[str]:
    async with private_exchange(rabbitmq_url, "outbox", unique) as name:
        yield name
