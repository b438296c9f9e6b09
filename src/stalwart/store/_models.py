"""What the read API returns: frozen pydantic models, ready for JSON (dashboard) or tables (CLI).

These are the one set of read models: the dashboard's API serves them as they
are (a part it does not show is left out by declaring the narrower base, e.g.
:class:`DeliverySummary`), and ``stalwart messages``, ``show`` and ``reports``
print them.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from stalwart.envelope import DeliveryState, Envelope

__all__ = [
    "DOWN_AFTER_INTERVALS",
    "LATE_AFTER_INTERVALS",
    "Availability",
    "ChainNode",
    "ComponentView",
    "DeliverySummary",
    "DeliveryView",
    "Edge",
    "MessageDetail",
    "MessageFilter",
    "MessagePage",
    "MessageSummary",
    "ReportView",
    "SentView",
    "TopicSeries",
    "Traffic",
    "TransitionView",
]

# A component is "late" after missing this many heartbeat intervals, "down" after this many.
LATE_AFTER_INTERVALS: Final = 2.0
DOWN_AFTER_INTERVALS: Final = 5.0


class Availability(enum.StrEnum):
    """From heartbeats: ``up`` (recent), ``late`` (overdue), ``down`` (gone or stopped)."""

    UP = "up"
    LATE = "late"
    DOWN = "down"


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class MessageFilter(_View):
    """Filters of :func:`~stalwart.store.queries.list_messages`; all optional, combined with AND.

    ``topic`` is an AMQP pattern (``*`` one word, ``#`` any). ``sender`` is a
    full ``service@site/instance``, a ``service@site`` or just a ``service``.
    ``service``/``state`` select messages with a delivery at that service (in
    that state). ``ever_state`` selects messages whose delivery (at
    ``service``, if given) was ever in that state, whatever its state now;
    ``min_attempts`` those whose delivery took at least that many attempts;
    all delivery conditions hold for one and the same delivery. ``text``
    matches all the words (full-text search over topic, kind, sender and
    body). ``system`` None hides ``sys.*`` messages unless a topic pattern is
    given; True or False forces them in or out.
    """

    topic: str | None = None
    kind: str | None = None
    sender: str | None = None
    service: str | None = None
    state: str | None = None
    ever_state: DeliveryState | None = None
    min_attempts: int | None = Field(default=None, ge=1)
    since: datetime | None = None
    until: datetime | None = None
    correlation_id: str | None = None
    text: str | None = None
    system: bool | None = None


class MessageSummary(_View):
    """One row of a message list; ``states`` maps each service to its delivery state."""

    id: str
    topic: str
    kind: str
    sender: str
    correlation_id: str | None
    causation_id: str | None
    created_at: datetime
    size: int
    states: dict[str, str] = {}


class MessagePage(_View):
    """A page of messages, newest first; pass ``next_cursor`` as ``after`` for the next."""

    items: list[MessageSummary]
    next_cursor: str | None = None


class TransitionView(_View):
    """One state a message took at a service. In a :meth:`MessageDetail.timeline`
    the first is ``sent``, by the publisher's service and instance, with no attempt."""

    service: str
    state: str
    attempt: int | None = None
    at: datetime
    reason: str | None = None
    instance: str | None = None


class SentView(_View):
    """``sent``, where every message's life cycle starts: who published it, and when.

    Not a delivery (no service has it yet), so it has no service and no
    delivery row. It is read from the message row, which is the record of the
    send: the subscriber, whose queue is bound to every topic, stores a row
    only for an envelope the bus accepted from its publisher; ``sender`` and
    ``at`` are that envelope's ``sender`` and ``created_at``, ``service`` the
    sender's service.
    """

    state: Literal["sent"] = "sent"
    service: str
    sender: str
    at: datetime


class DeliverySummary(_View):
    """Where a message stands at one service: its merged state and the last reason."""

    service: str
    state: str
    attempts: int
    last_at: datetime
    reason: str | None
    instance: str | None


class DeliveryView(DeliverySummary):
    """A message at one service: merged state, per-state times, and the raw history."""

    times: dict[str, datetime]
    transitions: list[TransitionView]


class ChainNode(MessageSummary):
    """A message and the messages it caused (``causation_id``), recursively."""

    children: list[ChainNode] = []

    @classmethod
    def of(cls, message: MessageSummary, children: list[ChainNode]) -> ChainNode:
        return cls.model_validate({**dict(message), "children": children})


class MessageDetail(_View):
    """Everything known about one message. The token itself is never stored ("***")."""

    envelope: Envelope
    size: int
    stored_at: datetime
    sent: SentView  # the first state; then each service's deliveries
    deliveries: list[DeliveryView]
    ancestors: list[MessageSummary]
    descendants: ChainNode
    truncated: bool = False

    def timeline(self) -> list[TransitionView]:
        """``sent`` first, whatever the clocks say (every life cycle starts with it),
        then every service's transitions by time."""
        sent = TransitionView(
            service=self.sent.service, state="sent", at=self.sent.at, instance=self.sent.sender
        )
        later = sorted(
            (t for d in self.deliveries for t in d.transitions), key=lambda t: (t.at, t.service)
        )
        return [sent, *later]

    def chain(self) -> ChainNode:
        """The ancestors (root first) above this message, its descendants below: one tree."""
        tree = self.descendants
        for ancestor in reversed(self.ancestors):
            tree = ChainNode.of(ancestor, [tree])
        return tree


class ReportView(_View):
    id: str
    level: str
    source: str
    text: str
    refs: dict[str, Any]
    host: str | None
    at: datetime


class ComponentView(_View):
    """One service instance from its latest heartbeat, with its availability now."""

    service: str
    instance: str
    site: str
    host: str
    pid: int
    started_at: datetime
    last_heartbeat: datetime
    interval: float
    uptime: float
    inflight: int
    processed: int
    failed: int
    progress: int | None
    patterns: list[str]
    stopping: bool
    age: float
    availability: Availability


class TopicSeries(_View):
    """Messages per bucket for one topic, oldest first."""

    topic: str
    counts: list[int]


class Edge(_View):
    """Messages from one sending service to one consuming service in the window."""

    source: str
    target: str
    count: int
    rate: float
    recent_rate: float = Field(
        default=0.0, description="messages per second over the window's last two buckets"
    )


class Traffic(_View):
    """Traffic over ``window`` seconds from ``start`` in buckets of ``bucket`` seconds."""

    start: datetime
    window: float
    bucket: float
    series: list[TopicSeries]
    edges: list[Edge]

    def rates(self) -> dict[str, float]:
        """Average messages per second per topic over the window."""
        return {s.topic: sum(s.counts) / self.window for s in self.series}
