"""Bodies of the system messages (``sys.*`` topics) every part agrees on.

Producers: the service runtime (heartbeats, lifecycle batches), ``report()``
and ``stalwart report`` (reports). Consumers: the persistence subscriber, the
watchdog, ``stalwart status`` and the dashboard.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from stalwart.envelope import Transition, utcnow

__all__ = [
    "HEARTBEAT_PREFIX",
    "LIFECYCLE_TOPIC",
    "REPORT_PREFIX",
    "Heartbeat",
    "LifecycleBatch",
    "Report",
    "ReportLevel",
    "heartbeat_topic",
    "report_topic",
]

LIFECYCLE_TOPIC: Final = "sys.lifecycle"
HEARTBEAT_PREFIX: Final = "sys.heartbeat"
REPORT_PREFIX: Final = "sys.report"


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Heartbeat(_Body):
    """Proof of life of one service instance, sent every ``interval`` seconds."""

    service: str
    site: str
    instance: str
    host: str
    pid: int
    started_at: datetime
    uptime: float
    interval: float
    inflight: int = 0
    processed: int = 0
    failed: int = 0
    progress: int | None = None
    patterns: list[str] = []
    stopping: bool = False


class LifecycleBatch(_Body):
    """Delivery-state transitions, batched by the runtime onto ``sys.lifecycle``."""

    transitions: list[Transition]


class ReportLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class Report(_Body):
    """Errors and information reported by batch tools onto ``sys.report.<level>``."""

    level: ReportLevel
    source: str
    text: str
    refs: dict[str, str] = {}
    host: str | None = None
    at: datetime = Field(default_factory=utcnow)


def heartbeat_topic(service: str) -> str:
    return f"{HEARTBEAT_PREFIX}.{service}"


def report_topic(level: ReportLevel | str) -> str:
    return f"{REPORT_PREFIX}.{ReportLevel(level).value}"
