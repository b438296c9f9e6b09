"""Getting the dashboard onto the bus, even when the bus is down at start.

A transport fails fast on its first ``start()`` and, once started,
reconnects by itself (replaying the live feed's queue and consumer). So only
the start needs retrying: :class:`BusLink` retries it in the background,
paced by :class:`~stalwart.backoff.Backoff`, then starts the live
hub; meanwhile the pages and ``/api/bus`` say since when the bus is down and
when it is tried next, instead of asking for a restart.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from stalwart.backoff import Backoff
from stalwart.bus import Transport, redact_url
from stalwart.bus._tasks import cancel_and_wait
from stalwart.dashboard.live import LiveHub
from stalwart.dashboard.models import BusStatus
from stalwart.envelope import utcnow
from stalwart.errors import StalwartError

__all__ = ["BusLink"]

_log = logging.getLogger("stalwart.dashboard")


class BusLink:
    """Starts the transport (when ``start_transport``) and then the live hub,
    retrying the start while the bus cannot be reached."""

    def __init__(
        self,
        transport: Transport | None,
        hub: LiveHub,
        *,
        start_transport: bool,
        backoff: Backoff | None = None,
    ) -> None:
        self._transport = transport
        self._hub = hub
        self._start_transport = start_transport
        self._backoff = backoff or Backoff()
        self._retrying: asyncio.Task[None] | None = None
        self._delay = 0.0
        self._up = False
        self.since: datetime | None = None
        self.next_retry: datetime | None = None
        self.attempts = 0
        self.last_failure: str | None = None

    @property
    def url(self) -> str | None:
        return None if self._transport is None else redact_url(self._transport.url)

    @property
    def reachable(self) -> bool:
        """Started and connected now (a bus lost after start reconnects by itself)."""
        return self._up and self._transport is not None and self._transport.connected

    @property
    def error(self) -> str | None:
        """What the pages say while the bus is down; None once it is up."""
        if self._up:
            return None if self.reachable else self._reconnecting()
        if self.since is None:
            return None
        wait = 0.0 if self.next_retry is None else (self.next_retry - utcnow()).total_seconds()
        return (
            f"the bus at {self.url} is unreachable since {self.since:%Y-%m-%d %H:%M:%S} UTC "
            f"({self.last_failure}); history is still shown; the dashboard keeps trying, "
            f"next try in {max(0.0, wait):.0f} s ({self.attempts} tried so far)"
        )

    def _reconnecting(self) -> str:
        return (
            f"the bus at {self.url} is unreachable (the connection was lost); history is "
            "still shown and the dashboard reconnects by itself"
        )

    def status(self) -> BusStatus:
        return BusStatus(
            url=self.url,
            reachable=self.reachable,
            live=self._hub.connected.is_set(),
            since=self.since,
            next_retry=self.next_retry,
            attempts=self.attempts,
            error=self.last_failure if not self._up else self.error,
        )

    async def open(self) -> None:
        """Try once now; if the bus is down, keep trying in the background."""
        if not await self._try():
            self._retrying = asyncio.create_task(self._retry(), name="dashboard-bus-retry")

    async def close(self) -> None:
        """Stop retrying at once, even in the middle of a try."""
        if self._retrying is not None:
            await cancel_and_wait(self._retrying)
            self._retrying = None

    async def _retry(self) -> None:
        while True:
            await asyncio.sleep(self._delay)
            if await self._try():
                return

    async def _try(self) -> bool:
        if self._start_transport and self._transport is not None:
            self.attempts += 1
            try:
                await self._transport.start()
            except Exception as exc:  # a backend's own error too: keep trying, say why
                self._failed(exc)
                return False
            if self.since is not None:
                _log.info("the bus at %s is reachable after %d tries", self.url, self.attempts)
        self._up = True
        self.since = self.next_retry = None
        self.attempts = 0
        self.last_failure = None
        await self._hub.start()
        return True

    def _failed(self, exc: Exception) -> None:
        now = utcnow()
        first = self.since is None
        self.since = self.since or now
        self.last_failure = str(exc) if isinstance(exc, StalwartError) else repr(exc)
        self._delay = self._backoff.next()
        self.next_retry = now + timedelta(seconds=self._delay)
        level = logging.WARNING if first else logging.INFO
        _log.log(level, "%s", self.error, exc_info=not isinstance(exc, StalwartError))
