"""A service started while its broker or its store is down waits for it, then works.

Before, `stalwart run` exited at once ("cannot reach RabbitMQ"), its watchdog
restarted it into the same outage five times within a minute and gave it up
as fatal: one broker restart left every service of the demo down.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from amqp_support import private_exchange
from stalwart.bus.amqp import AmqpTransport
from stalwart.config import Settings, load_settings
from stalwart.envelope import Envelope
from stalwart.service import Context, Service, serve_many
from tcp_proxy import proxy_to
from waiting import until


def _settings(tmp_path: Path, bus_url: str, store_url: str, exchange: str) -> Settings:
    config = tmp_path / "stalwart.toml"
    config.write_text("")
    return load_settings(
        config,
        env={"STALWART_HOME": str(tmp_path / "home")},
        overrides={"bus.url": bus_url, "bus.exchange": exchange, "store.url": store_url},
    )


@pytest.mark.parametrize("down", ["broker", "store"])
async def test_a_service_started_during_an_outage_waits_then_works(
    down: str,
    tmp_path: Path,
    rabbitmq_url: str,
    postgres_url: str,
    unique: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = rabbitmq_url if down == "broker" else postgres_url
    async with (
        private_exchange(rabbitmq_url, "outage", unique) as exchange,
        proxy_to(target) as proxy,
    ):
        bus_url = proxy.url(rabbitmq_url) if down == "broker" else rabbitmq_url
        store_url = proxy.url(postgres_url) if down == "store" else postgres_url
        settings = _settings(tmp_path, bus_url, store_url, exchange)
        # Given an idempotent service (it claims in the store) and its broker or store down
        handled: list[Any] = []
        svc = Service(f"outage-{unique}")

        @svc.handler("work.item", idempotent=True)
        async def work(ctx: Context, body: Any) -> None:
            handled.append(body["n"])

        proxy.cut()
        stop = asyncio.Event()
        caplog.set_level(logging.WARNING, logger="stalwart.startup")
        serving = asyncio.create_task(serve_many([svc], settings, stop))
        try:
            # When the service starts: it waits, saying why, instead of exiting
            await until(lambda: "cannot start yet" in caplog.text, 20.0, "a waiting message")
            assert not serving.done()
            # And the outage ends
            proxy.restore()
            publisher = AmqpTransport(rabbitmq_url, exchange=exchange)
            await publisher.start()
            try:

                async def declared() -> bool:
                    return svc.name in await publisher.queues()

                await until(declared, 30.0, "the service's queue declared")
                await publisher.publish([Envelope.new("work.item", {"n": 1})])
            finally:
                await publisher.close()
            # Then it handles the work
            await until(lambda: handled == [1], 30.0, "the message handled")
        finally:
            stop.set()
            await asyncio.wait_for(serving, 30.0)
