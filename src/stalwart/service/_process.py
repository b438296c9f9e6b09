"""A service as a whole process: open the bus, serve, stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING

from stalwart.bus import open_bus, redact_url
from stalwart.config import Settings
from stalwart.service._runner import ServiceRunner
from stalwart.startup import start_when_reachable

if TYPE_CHECKING:
    from stalwart.service._service import Service

__all__ = ["serve", "serve_many"]

_log = logging.getLogger("stalwart.service")


async def serve(service: Service, settings: Settings) -> None:
    """Run one instance of ``service`` until SIGTERM or SIGINT."""
    await serve_many([service], settings)


async def serve_many(
    services: list[Service], settings: Settings, stop: asyncio.Event | None = None
) -> None:
    """Run instances of ``services`` on one bus connection until ``stop`` or a signal.

    A bus or store that is down at start is waited for (:func:`start_when_reachable`).
    On stop: no new work is taken; in-flight handlers get each service's grace
    period; what is left is redelivered to other instances.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    transport = open_bus(settings)
    token = os.environ.get("STALWART_TOKEN")
    started: list[ServiceRunner] = []
    try:
        bus = f"the bus at {redact_url(settings.bus.url)}"
        if await start_when_reachable(transport.start, bus, stop=stop):
            for service in services:
                runner = ServiceRunner(service, transport, settings, token=token)
                if not await start_when_reachable(runner.start, service.name, stop=stop):
                    break
                started.append(runner)
        await stop.wait()
        _log.info("stopping %d service instance(s)", len(started))
        await asyncio.gather(*(runner.stop() for runner in started))
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await transport.close()
