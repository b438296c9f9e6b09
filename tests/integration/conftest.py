"""Fixtures of the transport contract suite: one factory per bus backend.

``transport_factory`` is parametrised by backend; calling it returns a started
transport on the same bus for the whole test (the same SQLite file, or the
same RabbitMQ exchange), so a test can play several processes. Every
transport it made is closed after the test.

``private_postgres`` and ``private_rabbit`` (tests/private_services.py) are
for the tests that stop or restart a server: never the shared ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from amqp_support import drop_exchange
from nats_support import drop_streams
from private_services import private_postgres, private_rabbit
from stalwart.bus import Delivery, Transport, open_bus, open_transport
from stalwart.bus.outbox import OutboxTransport
from stalwart.config import Settings

__all__ = ["private_postgres", "private_rabbit"]  # fixtures offered to this directory

Factory = Callable[..., Awaitable[Transport]]
Take = Callable[..., Awaitable[list[Delivery]]]


def _amqp_built() -> bool:
    return importlib.util.find_spec("stalwart.bus.amqp") is not None


@pytest.fixture(params=["sqlite", "amqp", "nats", "outbox-amqp", "outbox-nats"])
async def transport_factory(
    request: pytest.FixtureRequest, tmp_path: Path, unique: str
) -> AsyncIterator[Factory]:
    """``await transport_factory(**options)`` -> a started transport on this test's bus.

    ``outbox-*``: the broker wrapped in the outbox, as ``open_bus`` gives every
    network broker; each transport made has a spool of its own, as a process has.
    """
    backend = request.param.removeprefix("outbox-")
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/bus.db"
        base: dict[str, Any] = {}
    elif backend == "nats":
        url = request.getfixturevalue("nats_url")
        base = {"exchange": f"test-{unique}"}
    else:
        if not _amqp_built():
            pytest.skip("amqp transport not built yet")
        url = request.getfixturevalue("rabbitmq_url")
        base = {"exchange": f"test-{unique}"}
    made: list[Transport] = []
    spools = itertools.count()

    async def make(**options: Any) -> Transport:
        transport = open_transport(url, **{**base, **options})
        if backend != request.param:
            # Numbered before the first await: transports made at once get spools of their own.
            spool = tmp_path / f"outbox-{next(spools)}.db"
            transport = OutboxTransport(
                transport, spool, max_message_size=options.get("max_message_size")
            )
        await transport.start()
        made.append(transport)
        return transport

    try:
        yield make
    finally:
        for transport in reversed(made):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(transport.close(), 30.0)
        if backend == "amqp":
            await drop_exchange(url, base["exchange"])  # quorum queues are costly to leave
        if backend == "nats":
            await drop_streams(url, base["exchange"])


class _Taker:
    """Takes deliveries from queues; keeps iterators holding unsettled ones open.

    Closing a consume iterator releases its unsettled deliveries, so when a
    test takes messages without acking them, their iterator stays open until
    the end of the test.
    """

    def __init__(self) -> None:
        self.held: list[AsyncIterator[Delivery]] = []

    async def __call__(
        self,
        transport: Transport,
        queue: str,
        count: int,
        *,
        prefetch: int = 100,
        timeout: float = 10.0,
        ack: bool = True,
    ) -> list[Delivery]:
        """The next ``count`` deliveries of ``queue`` (acked unless ``ack=False``).

        Raises TimeoutError when fewer arrive within ``timeout`` seconds.
        """
        got: list[Delivery] = []
        iterator = transport.consume(queue, prefetch if ack else count)
        try:
            async with asyncio.timeout(timeout):
                async for delivery in iterator:
                    if ack:
                        await delivery.ack()
                    got.append(delivery)
                    if len(got) >= count:
                        break
        finally:
            if ack or len(got) < count:
                await _aclose(iterator)
            else:
                self.held.append(iterator)
        return got

    async def close(self) -> None:
        for iterator in self.held:
            await _aclose(iterator)


async def _aclose(iterator: AsyncIterator[Delivery]) -> None:
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()


@pytest.fixture
async def take() -> AsyncIterator[Take]:
    taker = _Taker()
    yield taker
    await taker.close()


async def _nothing_within(transport: Transport, queue: str, seconds: float) -> bool:
    """True when ``queue`` hands out nothing for ``seconds``."""
    taker = _Taker()
    try:
        await taker(transport, queue, 1, timeout=seconds, ack=False)
    except TimeoutError:
        return True
    finally:
        await taker.close()
    return False


@pytest.fixture
def nothing_within() -> Callable[[Transport, str, float], Awaitable[bool]]:
    return _nothing_within


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[Transport]:
    """The started bus of the ``settings`` fixture a test directory defines."""
    transport = open_bus(settings)
    await transport.start()
    try:
        yield transport
    finally:
        await transport.close()
