"""A dashboard on RabbitMQ that is down at start, or lost later, recovers by itself.

The broker sits behind a TCP proxy that refuses connections while cut, so
the outage is real for the dashboard without stopping the shared broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_system import free_port

from amqp_support import private_exchange
from stalwart.bus.amqp import AmqpTransport
from stalwart.config import Settings
from stalwart.dashboard import serve_dashboard
from stalwart.envelope import Envelope
from tcp_proxy import TcpProxy, proxy_to
from waiting import until

pytestmark = pytest.mark.rabbitmq


@dataclass
class ProxiedBus:
    """RabbitMQ behind ``proxy``, with an exchange of this test's own."""

    proxy: TcpProxy
    broker_url: str
    exchange: str


@pytest.fixture
async def bus(rabbitmq_url: str, unique: str) -> AsyncIterator[ProxiedBus]:
    async with (
        proxy_to(rabbitmq_url) as proxy,
        private_exchange(rabbitmq_url, "dash-bus", unique) as exchange,
    ):
        yield ProxiedBus(proxy, rabbitmq_url, exchange)


@contextlib.asynccontextmanager
async def dashboard_on(bus: ProxiedBus, home: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard served for real on ``bus`` through its proxy, and a client for it."""
    settings = Settings.model_validate(
        {
            "home": str(home),
            "bus": {"url": bus.proxy.url(bus.broker_url), "exchange": bus.exchange},
            "store": {"url": f"sqlite:///{home}/store.db"},
            "dashboard": {"live_batch_interval": 0.05},
        }
    )
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    bind = f"127.0.0.1:{free_port()}"
    serving = asyncio.create_task(serve_dashboard(settings, bind, stop, on_ready=ready.set_result))
    try:
        url = await asyncio.wait_for(ready, 20)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield client
    finally:
        stop.set()
        await asyncio.wait_for(serving, 20)


@contextlib.asynccontextmanager
async def publisher(bus: ProxiedBus) -> AsyncIterator[AmqpTransport]:
    """A transport straight to the broker (not through the proxy), to publish with."""
    transport = AmqpTransport(bus.broker_url, exchange=bus.exchange)
    await transport.start()
    try:
        yield transport
    finally:
        await transport.close()


async def live_ids(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ids of the messages in the ``messages`` events of an SSE stream."""
    event = None
    async for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == "messages":
            for message in json.loads(line.removeprefix("data: ")):
                yield message["id"]


async def bus_status(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/bus")
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


async def test_a_bus_down_at_start_is_reached_once_it_is_up_and_the_live_feed_starts(
    bus: ProxiedBus, tmp_path: Path
) -> None:
    # Given RabbitMQ refusing every connection when the dashboard starts
    bus.proxy.cut()
    async with dashboard_on(bus, tmp_path) as client:
        # When the API is asked, Then the bus is unreachable, since when and next try said
        status = await bus_status(client)
        assert status["reachable"] is False and status["live"] is False
        since = datetime.fromisoformat(status["since"])
        assert datetime.fromisoformat(status["next_retry"]) > since
        assert status["attempts"] >= 1 and status["error"]
        assert "guest:***@" in status["url"]
        overview = (await client.get("/api/overview")).json()
        assert overview["bus"]["reachable"] is False
        assert "unreachable since" in overview["bus_error"]
        assert "next try in" in overview["bus_error"]
        queues = await client.get("/api/queues")
        assert queues.status_code == 503 and "unreachable" in queues.json()["detail"]
        # And a live viewer that connected while the bus was down
        async with client.stream("GET", "/live", params={"pattern": "work.*"}) as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == "event: hello"
            # When RabbitMQ accepts connections again
            bus.proxy.restore()

            # Then within a few seconds the API says the bus is reachable and live
            async def on_the_bus() -> bool:
                status = await bus_status(client)
                return bool(status["reachable"] and status["live"])

            await until(on_the_bus, 10, "the dashboard back on the bus")
            status = await bus_status(client)
            assert status["since"] is None and status["error"] is None
            assert (await client.get("/api/queues")).status_code == 200
            # And a message published to the exchange reaches the open live stream
            message = Envelope.new("work.back", {"n": 1})
            async with publisher(bus) as transport:
                await transport.publish([message])
            async with asyncio.timeout(10):
                async for message_id in live_ids(lines):
                    if message_id == message.id:
                        break


async def test_a_bus_lost_after_start_comes_back_on_the_live_feed_by_itself(
    bus: ProxiedBus, tmp_path: Path
) -> None:
    async with dashboard_on(bus, tmp_path) as client, publisher(bus) as transport:
        # Given the dashboard live on RabbitMQ and a live viewer
        async def live() -> bool:
            return bool((await bus_status(client))["live"])

        await until(live, 15, "the live feed subscribed")
        async with client.stream("GET", "/live", params={"pattern": "work.*"}) as stream:
            ids = live_ids(stream.aiter_lines())
            # When every connection to RabbitMQ drops, and RabbitMQ is back a moment later
            bus.proxy.cut()

            async def unreachable() -> bool:
                status = await bus_status(client)
                return status["reachable"] is False and "connection was lost" in status["error"]

            # Then meanwhile the dashboard says the bus is unreachable
            await until(unreachable, 10, "the lost bus reported")
            bus.proxy.restore()
            # And messages published after that reach the same live stream again
            sent: set[str] = set()

            async def publish_until_seen() -> None:
                while True:
                    message = Envelope.new("work.after", {"n": len(sent)})
                    sent.add(message.id)
                    await transport.publish([message])
                    await asyncio.sleep(0.2)

            publishing = asyncio.create_task(publish_until_seen())
            try:
                async with asyncio.timeout(20):
                    async for message_id in ids:
                        if message_id in sent:
                            break
            finally:
                publishing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publishing
        assert (await bus_status(client))["reachable"] is True
