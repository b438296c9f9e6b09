"""Opening the bus for a CLI command, with a message that says what to do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from stalwart.bus import Transport, open_bus, redact_url
from stalwart.cli._existing import refuse_missing
from stalwart.config import Settings
from stalwart.errors import BrokerUnavailable

__all__ = ["connected"]


@asynccontextmanager
async def connected(settings: Settings, *, reading: bool = False) -> AsyncIterator[Transport]:
    """A started transport for ``settings``, closed on exit; a command that only
    reads the bus (``reading``) refuses to create an embedded one."""
    if reading:
        refuse_missing(settings, settings.bus.url, "bus")
    transport = open_bus(settings)
    try:
        await transport.start()
    except BrokerUnavailable as exc:
        raise BrokerUnavailable(
            f"cannot reach the bus at {redact_url(settings.bus.url)}: {exc}; check that the "
            "broker runs, or set STALWART_BUS_URL / [bus] url"
        ) from None
    try:
        yield transport
    finally:
        await transport.close()
