"""What the watchdog publishes: one body, ``WatchdogEvent``, on ``sys.watchdog.<event>``.

Consumers (the persistence subscriber, the dashboard, alarms) read ``event``
for what happened, ``reason`` for a one-line why, and ``evidence`` for the
figures behind it (exit code, silent seconds, progress rate, RSS, ...).
"""

from __future__ import annotations

import enum
import socket
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from stalwart.envelope import Envelope, utcnow

__all__ = ["WATCHDOG_PREFIX", "EventKind", "WatchdogEvent", "event_envelope", "event_topic"]

WATCHDOG_PREFIX: Final = "sys.watchdog"


class EventKind(enum.StrEnum):
    STARTED = "started"
    HEALTHY = "healthy"
    EXITED = "exited"
    LATE = "late"
    SLOW = "slow"
    RUNAWAY = "runaway"
    HALTED = "halted"
    RESTARTED = "restarted"
    DEGRADED = "degraded"
    SCALED = "scaled"
    FATAL = "fatal"
    STOPPED = "stopped"
    DISK_LOW = "disk_low"
    DISK_OK = "disk_ok"


class WatchdogEvent(BaseModel):
    """One observation or action of the watchdog about one program instance."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event: EventKind
    program: str
    instance: int | None = None
    pid: int | None = None
    state: str | None = None
    reason: str = ""
    evidence: dict[str, Any] = {}
    restarts: int = 0
    watchdog: str = ""
    host: str = Field(default_factory=socket.gethostname)
    at: datetime = Field(default_factory=utcnow)
    alarm: bool = False


def event_topic(kind: EventKind | str) -> str:
    return f"{WATCHDOG_PREFIX}.{EventKind(kind).value}"


def event_envelope(event: WatchdogEvent, sender: str, token: str | None = None) -> Envelope:
    """The envelope that carries ``event``; fatal events are flagged as alarms in a header.
    ``token`` (``STALWART_TOKEN``) lets consumers tell the watchdog from a forger."""
    headers = {"alarm": "true"} if event.alarm else {}
    return Envelope.new(
        event_topic(event.event), event, sender=sender, headers=headers, token=token
    )
