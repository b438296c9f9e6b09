"""Publishing the parts' ``sys.*`` events best effort: a bus outage never stops a part.

HA decisions must not wait on the bus (the bus may be the very thing that
failed), and integrity commands must keep working without one: the store or
the catalog records everything, so only the live notification is lost. So a
publisher tries to connect once (with a timeout), says once when it cannot,
and then drops events; each publish has a timeout and a failure only logs.

The watchdog queues its events in its bus link instead (it must never
await), with the same envelope (:func:`stalwart.events.event_envelope`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from types import TracebackType

from stalwart.bus import Transport, open_bus
from stalwart.config import Settings
from stalwart.envelope import default_sender
from stalwart.errors import StalwartError
from stalwart.events import SysEvent, event_envelope

__all__ = ["EventPublisher"]

_log = logging.getLogger("stalwart.events")


class EventPublisher:
    """Publishes :class:`~stalwart.events.SysEvent` bodies on their topics.

    ``EventPublisher(transport, sender)`` publishes on a transport its owner
    started and closes (None: no bus, every event is only logged);
    :meth:`for_settings` opens and closes its own (``async with``). Events are
    signed with ``token``, by default the process's ``STALWART_TOKEN`` as
    services and the watchdog sign theirs, so consumers can tell a forger.
    """

    def __init__(
        self,
        transport: Transport | None,
        sender: str,
        *,
        timeout: float = 5.0,
        connect: Callable[[], Transport] | None = None,
        token: str | None = None,
    ) -> None:
        self._transport = transport
        self._sender = sender
        self._token = token or os.environ.get("STALWART_TOKEN")
        self._timeout = timeout
        self._connect = connect
        self.unavailable: str | None = (
            None if transport is not None or connect is not None else "no bus configured"
        )
        self.published = 0

    @classmethod
    def for_settings(
        cls, settings: Settings, service: str, site: str | None = None
    ) -> EventPublisher:
        """A publisher that opens the configured bus (``bus.url``, its options and outbox)
        on :meth:`start` and closes it on :meth:`close`, sending as ``service@site``."""
        return cls(
            None,
            default_sender(service, site or settings.site),
            connect=lambda: open_bus(settings),
        )

    async def __aenter__(self) -> EventPublisher:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the bus of :meth:`for_settings`; on failure say why in ``unavailable``."""
        if self._connect is None or self._transport is not None:
            return
        try:
            transport = self._connect()
            await asyncio.wait_for(transport.start(), self._timeout)
        except (StalwartError, OSError, ImportError, TimeoutError) as exc:
            self.unavailable = f"bus unreachable ({str(exc) or type(exc).__name__})"
            _log.warning("events will not be published: %s", self.unavailable)
            return
        self._transport = transport
        self.unavailable = None

    async def publish(self, event: SysEvent) -> bool:
        """Publish ``event`` on its topic; False (and a log line) when it could not be."""
        _log.debug("event %s %s", event.topic, event.model_dump_json())
        if self._transport is None:
            return False
        envelope = event_envelope(event, self._sender, self._token)
        try:
            await asyncio.wait_for(self._transport.publish([envelope]), self._timeout)
        except (StalwartError, OSError, TimeoutError) as exc:
            _log.warning("event %s not published: %s", event.topic, exc)
            return False
        self.published += 1
        return True

    async def close(self) -> None:
        """Close the transport this publisher opened (one it was given stays open)."""
        if self._connect is not None and self._transport is not None:
            transport, self._transport = self._transport, None
            await transport.close()
