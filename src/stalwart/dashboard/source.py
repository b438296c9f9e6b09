"""Where the dashboard's history comes from: a :class:`DataSource`.

The production source, :class:`~stalwart.dashboard.storesource.StoreSource`,
reads the message store through ``stalwart.store.queries`` and answers with
its read models; the protocol lets a test or a benchmark stand in for the
store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.dashboard.flows import Flows
from stalwart.dashboard.models import (
    Instance,
    MessageFilter,
    MessagePage,
    MessageView,
    ReportView,
    Traffic,
)
from stalwart.dashboard.servicestats import ServiceStats

__all__ = ["DataSource"]


class DataSource(Protocol):
    """Read-only queries the dashboard needs; each raises StalwartError on failure."""

    async def components(self) -> list[Instance]:
        """Every known service instance with its availability."""

    async def traffic(self, window: float, bucket: float) -> Traffic:
        """Per-topic counts per bucket and sender -> service edges over ``window``."""

    async def flows(self, window: float) -> Flows:
        """(publisher, topic, consumer or "") -> (count, errors) over ``window`` seconds."""

    async def service_stats(self, service: str, window: float, bucket: float) -> ServiceStats:
        """One service's throughput, latency, failures and depth over ``window`` seconds."""

    async def counts_by_state(self) -> dict[str, int]:
        """How many deliveries are in each state."""

    async def counts_by_service(self) -> dict[str, dict[str, int]]:
        """How many deliveries each service has in each state (from the count table)."""

    async def oldest_pending(self) -> dict[str, datetime]:
        """Each service with unfinished deliveries -> creation time of the oldest."""

    async def list_messages(
        self, filters: MessageFilter, limit: int, cursor: str | None
    ) -> MessagePage:
        """Newest first, keyset-paged: pass the previous page's ``next_cursor``."""

    async def get_message(self, message_id: str) -> MessageView | None:
        """Envelope, timeline and causal chain, or None if unknown."""

    async def bodies(self, ids: list[str]) -> dict[str, Any]:
        """The bodies of these messages, by id (those not found are left out)."""

    async def list_reports(
        self, level: str | None, source: str | None, limit: int
    ) -> list[ReportView]:
        """Reports from batch tools, newest first."""

    async def engine(self) -> AsyncEngine | None:
        """The store's engine, for the panels of other parts (None if not a database)."""

    async def close(self) -> None:
        """Release connections."""
