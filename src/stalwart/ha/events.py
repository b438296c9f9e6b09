"""Bodies of the ``sys.ha.*`` events, and a publisher that never blocks HA logic.

Topics: ``sys.ha.acquired``, ``sys.ha.lost``, ``sys.ha.stepped-down``,
``sys.ha.fenced``, ``sys.ha.restored`` (leases, :class:`LeaseEvent`),
``sys.ha.monitor`` (:class:`MonitorTransition`) and ``sys.ha.failover``
(:class:`Failover`: clients switch to ``to_url``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from stalwart.bus import Transport
from stalwart.envelope import Envelope, utcnow
from stalwart.errors import StalwartError

__all__ = [
    "HA_PREFIX",
    "EventPublisher",
    "Failover",
    "LeaseEvent",
    "LeaseEventName",
    "MonitorTransition",
    "ha_topic",
]

HA_PREFIX: Final = "sys.ha"
_PUBLISH_TIMEOUT: Final = 5.0
_log = logging.getLogger("stalwart.ha.events")

LeaseEventName = Literal["acquired", "lost", "stepped-down", "fenced", "restored"]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class LeaseEvent(_Body):
    """A change of who holds a role, or a checkpoint restored by a new holder."""

    event: LeaseEventName
    role: str
    holder: str
    token: int | None = None
    version: int | None = None
    detail: str = ""
    at: datetime = Field(default_factory=utcnow)


class MonitorTransition(_Body):
    """A health monitor moved between healthy, suspect, recovering and failed."""

    monitor: str
    kind: str
    from_state: str
    to_state: str
    reason: str
    url: str
    at: datetime = Field(default_factory=utcnow)


class Failover(_Body):
    """Clients of ``monitor`` must switch to ``to_url`` (also kept in ha_monitors)."""

    monitor: str
    kind: str
    from_url: str
    to_url: str
    at: datetime = Field(default_factory=utcnow)


def ha_topic(event: str) -> str:
    """``sys.ha.<event>``."""
    return f"{HA_PREFIX}.{event}"


class EventPublisher:
    """Publishes ha events best-effort: a bus outage is logged, never raised.

    HA decisions must not wait on the bus (the bus may be the very thing that
    failed), so each publish has a timeout and failures only log.
    """

    def __init__(self, transport: Transport | None, sender: str) -> None:
        self._transport = transport
        self._sender = sender

    async def publish(self, event: str, body: BaseModel) -> bool:
        """Publish ``body`` on ``sys.ha.<event>``; False if it could not be published."""
        _log.info("ha event=%s %s", event, body.model_dump_json())
        if self._transport is None:
            return False
        envelope = Envelope.new(ha_topic(event), body, sender=self._sender)
        try:
            async with asyncio.timeout(_PUBLISH_TIMEOUT):
                await self._transport.publish([envelope])
        except (StalwartError, TimeoutError, OSError) as exc:
            _log.warning("ha event=%s not published: %s", event, exc)
            return False
        return True
