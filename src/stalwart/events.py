"""The events of the parts on ``sys.<family>.<kind>``: one vocabulary for all of them.

HA (``sys.ha.*``), integrity (``sys.integrity.*``) and the watchdog
(``sys.watchdog.*``) publish their events with these bodies; the store keeps
them as messages and the dashboard counts them. Having every kind and body in
one module means a producer and its readers cannot drift apart: a body knows
its own topic (:attr:`SysEvent.topic`), and :func:`decode_event` turns a
topic and a JSON body back into the model that produced them.

The wire format is documented in ``docs/wire-format.md`` ("Events of the
parts"). Publishing is :class:`stalwart.service.EventPublisher` (best effort,
never blocks a part's decisions) or the watchdog's bus link, both with the
envelope of :func:`event_envelope`.
"""

from __future__ import annotations

import enum
import socket
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from stalwart.envelope import Envelope, utcnow

__all__ = [
    "FAMILIES",
    "Failover",
    "Family",
    "HaKind",
    "IntegrityEvent",
    "IntegrityKind",
    "LeaseEvent",
    "LeaseKind",
    "MonitorTransition",
    "QueueLeaderMove",
    "SysEvent",
    "WatchdogEvent",
    "WatchdogKind",
    "decode_event",
    "event_envelope",
]


class HaKind(enum.StrEnum):
    """``sys.ha.<kind>``: lease changes, monitor transitions, failovers, leader moves."""

    ACQUIRED = "acquired"
    LOST = "lost"
    STEPPED_DOWN = "stepped-down"
    FENCED = "fenced"
    RESTORED = "restored"
    MONITOR = "monitor"
    FAILOVER = "failover"
    QUEUE_LEADER = "queue-leader"


class IntegrityKind(enum.StrEnum):
    """``sys.integrity.<kind>``: the outcome of an ingest, transfer, verify or scrub."""

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


class WatchdogKind(enum.StrEnum):
    """``sys.watchdog.<kind>``: what the watchdog saw or did about one program instance."""

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


LeaseKind = Literal[
    HaKind.ACQUIRED, HaKind.LOST, HaKind.STEPPED_DOWN, HaKind.FENCED, HaKind.RESTORED
]


class SysEvent(BaseModel):
    """A body on ``sys.<family>.<kind>``; readers ignore fields they do not know."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    family: ClassVar[str]

    @property
    @abstractmethod
    def event_kind(self) -> str:
        """The topic's last word (``event`` where the body carries it)."""

    @property
    def topic(self) -> str:
        return f"sys.{self.family}.{self.event_kind}"

    def headers(self) -> dict[str, str]:
        """Envelope headers that let consumers route on the event without its body."""
        return {}


class _NamesItsKind(SysEvent):
    """A body whose ``event`` field is its kind: one model serves many kinds."""

    event: enum.StrEnum

    @property
    def event_kind(self) -> str:
        return self.event.value


class _OneKind(SysEvent):
    """A body of exactly one kind, ``kind_word``."""

    kind_word: ClassVar[str]

    @property
    def event_kind(self) -> str:
        return self.kind_word


class LeaseEvent(_NamesItsKind):
    """A change of who holds a role, or a checkpoint restored by a new holder."""

    family: ClassVar[str] = "ha"

    event: LeaseKind
    role: str
    holder: str
    token: int | None = None
    version: int | None = None
    detail: str = ""
    at: datetime = Field(default_factory=utcnow)


class MonitorTransition(_OneKind):
    """A health monitor moved between healthy, suspect, recovering and failed."""

    family: ClassVar[str] = "ha"
    kind_word: ClassVar[str] = HaKind.MONITOR.value

    monitor: str
    kind: str
    from_state: str
    to_state: str
    reason: str
    url: str
    at: datetime = Field(default_factory=utcnow)


class Failover(_OneKind):
    """Clients of ``monitor`` must switch to ``to_url`` (also kept in ha_monitors)."""

    family: ClassVar[str] = "ha"
    kind_word: ClassVar[str] = HaKind.FAILOVER.value

    monitor: str
    kind: str
    from_url: str
    to_url: str
    at: datetime = Field(default_factory=utcnow)


class QueueLeaderMove(_OneKind):
    """Quorum queue ``queue`` is led by ``to_node`` now, no longer by ``from_node``."""

    family: ClassVar[str] = "ha"
    kind_word: ClassVar[str] = HaKind.QUEUE_LEADER.value

    queue: str
    from_node: str
    to_node: str
    at: datetime = Field(default_factory=utcnow)


class IntegrityEvent(_NamesItsKind):
    """Body of every ``sys.integrity.*`` message."""

    family: ClassVar[str] = "integrity"

    event: IntegrityKind
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


class WatchdogEvent(_NamesItsKind):
    """One observation or action of the watchdog about one program instance.

    ``reason`` is a one-line why, ``evidence`` the figures behind it (exit
    code, silent seconds, progress rate, RSS, ...).
    """

    family: ClassVar[str] = "watchdog"

    event: WatchdogKind
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

    def headers(self) -> dict[str, str]:
        """Alarms (fatal, disk low) are flagged in a header, for routing without the body."""
        return {"alarm": "true"} if self.alarm else {}


@dataclass(frozen=True, slots=True)
class Family:
    """The kinds of one ``sys.<name>.*`` family and the body each kind carries."""

    name: str
    kinds: type[enum.StrEnum]
    bodies: Mapping[str, type[SysEvent]]


def _family(
    name: str, kinds: type[enum.StrEnum], default: type[SysEvent], **special: type[SysEvent]
) -> Family:
    bodies = {kind.value: special.get(kind.name, default) for kind in kinds}
    return Family(name, kinds, bodies)


FAMILIES: Final[Mapping[str, Family]] = {
    family.name: family
    for family in (
        _family(
            "ha",
            HaKind,
            LeaseEvent,
            MONITOR=MonitorTransition,
            FAILOVER=Failover,
            QUEUE_LEADER=QueueLeaderMove,
        ),
        _family("integrity", IntegrityKind, IntegrityEvent),
        _family("watchdog", WatchdogKind, WatchdogEvent),
    )
}


def decode_event(topic: str, body: object) -> SysEvent:
    """The event ``body`` carried on ``topic``.

    Raises ``ValueError`` (pydantic's ``ValidationError`` is one) when the topic
    is not an event of the vocabulary, when the body does not fit the kind's
    model, or when the body names another kind than the topic.
    """
    parts = topic.split(".", 2)
    family = FAMILIES.get(parts[1]) if len(parts) == 3 and parts[0] == "sys" else None
    model = family.bodies.get(parts[2]) if family is not None else None
    if model is None:
        raise ValueError(f"{topic!r} is not a sys.* event topic: see docs/wire-format.md")
    event = model.model_validate(body)
    if event.topic != topic:
        raise ValueError(f"a {type(event).__name__} for {event.topic!r} was sent on {topic!r}")
    return event


def event_envelope(event: SysEvent, sender: str, token: str | None = None) -> Envelope:
    """The envelope that carries ``event`` on its topic; ``token`` (``STALWART_TOKEN``)
    lets consumers tell the part from a forger."""
    return Envelope.new(event.topic, event, sender=sender, headers=event.headers(), token=token)
