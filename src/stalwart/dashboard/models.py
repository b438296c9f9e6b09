"""What the dashboard shows, as typed models: the JSON API's schema and the pages' data.

Message lists, a message's deliveries, timeline and causal chain, traffic and
reports are the store's read models (:mod:`stalwart.store.queries`), served as
they are and re-exported here; the message filter is the store's own
:class:`~stalwart.store.queries.MessageFilter`. Defined here is only what the
store does not know: instances as the pages group them, the bus and its
queues, and the pages' compositions (:class:`MessageView`, :class:`Overview`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stalwart.store.queries import (
    Availability,
    ChainNode,
    DeliverySummary,
    Edge,
    MessageFilter,
    MessagePage,
    MessageSummary,
    ReportView,
    TopicSeries,
    Traffic,
    TransitionView,
)

__all__ = [
    "Availability",
    "BusStatus",
    "ChainNode",
    "DeadLetterItem",
    "DeliverySummary",
    "Edge",
    "Instance",
    "MessageFilter",
    "MessagePage",
    "MessageSummary",
    "MessageView",
    "Overview",
    "QueueInfo",
    "ReportView",
    "ServiceGroup",
    "SiteGroup",
    "TopicSeries",
    "Traffic",
    "TransitionView",
    "active_filters",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


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


def active_filters(filters: MessageFilter) -> dict[str, str]:
    """The filters that are set, as the message page's query parameters."""
    out: dict[str, str] = {}
    for key, value in filters.model_dump(exclude={"system"}).items():
        if value not in (None, ""):
            name = "correlation" if key == "correlation_id" else key
            out[name] = value.isoformat() if isinstance(value, datetime) else str(value)
    return out


class MessageView(_Model):
    """A message's page: envelope (token redacted), where it stands at each service,
    its timeline from ``sent`` and its causal chain from the root."""

    envelope: dict[str, Any]
    deliveries: list[DeliverySummary] = Field(default_factory=list)
    timeline: list[TransitionView]
    chain: ChainNode | None = None


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
    reports: list[ReportView]
    bus: BusStatus | None = None
    bus_error: str | None = None
    store_error: str | None = None
