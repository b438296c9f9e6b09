"""What the dashboard shows, as typed models: the JSON API's schema and the pages' data.

The store's query results are converted into these in :mod:`.storesource`,
so the pages, the API and the charts depend on one small vocabulary. The
message filter is the store's own :class:`~stalwart.store.queries.MessageFilter`.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stalwart.store.queries import MessageFilter

__all__ = [
    "Availability",
    "BusStatus",
    "ChainNode",
    "DeadLetterItem",
    "DeliveryItem",
    "Edge",
    "Instance",
    "MessageDetail",
    "MessageFilter",
    "MessagePage",
    "MessageSummary",
    "Overview",
    "QueueInfo",
    "ReportItem",
    "ServiceGroup",
    "SiteGroup",
    "TimelineEntry",
    "TopicSeries",
    "Traffic",
    "active_filters",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Availability(enum.StrEnum):
    """From heartbeats: ``up`` (recent), ``late`` (overdue), ``down`` (gone or stopped)."""

    UP = "up"
    LATE = "late"
    DOWN = "down"


class Instance(_Model):
    """One running (or lately running) instance of a service."""

    service: str
    site: str
    instance: str
    host: str | None = None
    pid: int | None = None
    status: Availability
    since: datetime | None = None
    last_seen: datetime | None = None
    heartbeat_age: float | None = None
    uptime: float | None = None
    inflight: int = 0
    processed: int = 0
    failed: int = 0
    progress: int | None = None
    unverified: bool = Field(
        default=False,
        description="its latest sys.* message had no valid token while [security] has a key",
    )


class ServiceGroup(_Model):
    """A service at one site with its instances; its status is its best instance's."""

    name: str
    site: str
    status: Availability
    instances: list[Instance]


class SiteGroup(_Model):
    site: str
    services: list[ServiceGroup]


class TopicSeries(_Model):
    """Messages per bucket for one topic, oldest first."""

    topic: str
    counts: list[int]


class Edge(_Model):
    """Messages from one sending service to one consuming service in the window."""

    source: str
    target: str
    count: int
    rate: float
    recent_rate: float = Field(
        default=0.0, description="messages per second over the window's last two buckets"
    )


class Traffic(_Model):
    """Traffic over ``window`` seconds in buckets of ``bucket`` seconds."""

    start: datetime
    window: float
    bucket: float
    series: list[TopicSeries]
    edges: list[Edge]

    def rates(self) -> dict[str, float]:
        """Average messages per second per topic over the window."""
        return {s.topic: sum(s.counts) / self.window for s in self.series}


def active_filters(filters: MessageFilter) -> dict[str, str]:
    """The filters that are set, as the message page's query parameters."""
    out: dict[str, str] = {}
    for key, value in filters.model_dump(exclude={"system"}).items():
        if value not in (None, ""):
            name = "correlation" if key == "correlation_id" else key
            out[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return out


class MessageSummary(_Model):
    id: str
    topic: str
    kind: str
    sender: str
    created_at: datetime
    correlation_id: str | None = None
    causation_id: str | None = None
    states: dict[str, str] = Field(default_factory=dict)


class MessagePage(_Model):
    """One page of the list and the cursor of the next (None at the end)."""

    items: list[MessageSummary]
    next_cursor: str | None = None


class TimelineEntry(_Model):
    service: str
    state: str
    at: datetime
    reason: str | None = None
    attempt: int | None = None
    instance: str | None = None


class DeliveryItem(_Model):
    """Where a message stands at one service: its merged state and the last reason."""

    service: str
    state: str
    attempts: int
    last_at: datetime
    reason: str | None = None
    instance: str | None = None


class ChainNode(_Model):
    """A message in a causal chain and the messages it caused."""

    id: str
    topic: str
    kind: str
    sender: str | None = None
    created_at: datetime | None = None
    children: list[ChainNode] = Field(default_factory=list)


class MessageDetail(_Model):
    """Envelope (token redacted), per-service timeline, causal chain from its root."""

    envelope: dict[str, Any]
    deliveries: list[DeliveryItem] = Field(default_factory=list)
    timeline: list[TimelineEntry]
    chain: ChainNode | None = None


class ReportItem(_Model):
    level: str
    source: str
    text: str
    at: datetime
    refs: dict[str, str] = Field(default_factory=dict)
    host: str | None = None


class QueueInfo(_Model):
    name: str
    ready: int
    inflight: int
    delayed: int
    dead: int


class DeadLetterItem(_Model):
    queue: str
    key: str
    reason: str
    attempts: int
    died_at: datetime
    envelope: dict[str, Any] | None = None
    raw: str | None = None


class BusStatus(_Model):
    """Whether the dashboard is on the bus; while it is not, since when and the next try."""

    url: str | None = Field(description="the bus URL, password masked; null without a bus")
    reachable: bool = Field(description="the bus transport has started and is connected now")
    live: bool = Field(description="the live feed is subscribed to the bus")
    since: datetime | None = Field(default=None, description="unreachable since")
    next_retry: datetime | None = Field(default=None, description="when it is tried again")
    attempts: int = Field(default=0, description="tries so far while unreachable")
    error: str | None = Field(default=None, description="why the last try failed")


class Overview(_Model):
    """Everything on the front page in one answer."""

    generated_at: datetime
    sites: list[SiteGroup]
    counts_by_state: dict[str, int]
    rates: dict[str, float]
    queues: list[QueueInfo]
    reports: list[ReportItem]
    bus: BusStatus | None = None
    bus_error: str | None = None
    store_error: str | None = None
