"""Integrity events on ``sys.integrity.<event>``, and a publisher that tolerates no bus.

Commands must keep working when the bus is down: the publisher tries once
to connect (with a timeout), and if that fails it says so once and drops
events instead of failing the command. The catalog still records
everything, so nothing is lost but the live notification.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from stalwart.bus import Transport, open_bus, open_transport
from stalwart.config import Settings
from stalwart.envelope import Envelope, default_sender, utcnow
from stalwart.errors import StalwartError

__all__ = [
    "EVENT_PREFIX",
    "EventKind",
    "EventPublisher",
    "IntegrityEvent",
    "event_topic",
]

EVENT_PREFIX: Final = "sys.integrity"
_log = logging.getLogger("stalwart.integrity.events")


class EventKind(enum.StrEnum):
    INGESTED = "ingested"
    TRANSFERRED = "transferred"
    REPAIRED = "repaired"
    REFETCHED = "refetched"
    RETRANSMITTED = "retransmitted"
    FAILED = "failed"
    VERIFIED = "verified"
    CORRUPT = "corrupt"
    SCRUBBED = "scrubbed"
    DARK = "dark"
    MISSING = "missing"


class IntegrityEvent(BaseModel):
    """Body of every ``sys.integrity.*`` message."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event: EventKind
    site: str
    name: str | None = None
    path: str | None = None
    src: str | None = None
    dst: str | None = None
    size: int | None = None
    digest: str | None = None
    bytes_moved: int = 0
    bytes_refetched: int = 0
    bytes_retransmitted: int = 0
    blocks_repaired: int = 0
    blocks_bad: list[int] = []
    detail: str | None = None
    at: datetime = Field(default_factory=utcnow)


def event_topic(kind: EventKind | str) -> str:
    return f"{EVENT_PREFIX}.{EventKind(kind).value}"


class EventPublisher:
    """Publishes integrity events if a bus is reachable; see the module docstring."""

    def __init__(
        self,
        connect: Callable[[], Transport] | None,
        *,
        sender: str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self._connect = connect
        self._sender = sender or default_sender("integrity")
        self._timeout = connect_timeout
        self._transport: Transport | None = None
        self.unavailable: str | None = None if connect else "no bus configured"
        self.published = 0

    @classmethod
    def for_settings(cls, settings: Settings, site: str | None = None) -> EventPublisher:
        """A publisher on the configured bus (``bus.url``, its options and outbox)."""
        return cls(
            lambda: open_bus(settings),
            sender=default_sender("integrity", site or settings.site),
        )

    @classmethod
    def for_url(cls, url: str, **options: Any) -> EventPublisher:
        """A publisher on the bus at ``url`` (``options`` go to the transport)."""
        return cls(lambda: open_transport(url, **options))

    async def __aenter__(self) -> EventPublisher:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._connect is None:
            return
        try:
            transport = self._connect()
            await asyncio.wait_for(transport.start(), self._timeout)
        except (StalwartError, OSError, ImportError, TimeoutError) as exc:
            self.unavailable = f"bus unreachable ({exc or type(exc).__name__})"
            _log.warning("integrity events will not be published: %s", self.unavailable)
            return
        self._transport = transport

    async def publish(self, event: IntegrityEvent) -> bool:
        """Publish ``event``; False (and a log line) when it could not be."""
        if self._transport is None:
            return False
        envelope = Envelope.new(event_topic(event.event), event, sender=self._sender)
        try:
            await asyncio.wait_for(self._transport.publish([envelope]), self._timeout * 2)
        except (StalwartError, OSError, TimeoutError) as exc:
            _log.warning("integrity event not published event=%s error=%s", event.event, exc)
            return False
        self.published += 1
        return True

    async def close(self) -> None:
        if self._transport is not None:
            transport, self._transport = self._transport, None
            await transport.close()
