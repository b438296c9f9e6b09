"""The production :class:`~stalwart.dashboard.source.DataSource`: the message store.

Serves ``stalwart.store.queries`` results as they are (instances and a
message's page are composed from them), caches the aggregates every viewer
shares, and turns database failures into
:class:`~stalwart.errors.StoreUnavailable`, so a page shows "store
unavailable" rather than an error page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.dashboard.backlog import oldest_pending
from stalwart.dashboard.cache import TtlCache
from stalwart.dashboard.flows import Flows, flows
from stalwart.dashboard.models import (
    Availability,
    DeliverySummary,
    Instance,
    MessageFilter,
    MessagePage,
    MessageView,
    ReportView,
    Traffic,
)
from stalwart.dashboard.servicestats import ServiceStats, service_stats
from stalwart.errors import StoreUnavailable
from stalwart.store import Store, queries
from stalwart.store.schema import messages

__all__ = ["StoreSource", "instance_of"]


def instance_of(c: queries.ComponentView) -> Instance:
    """A component with the moment its current availability began."""
    status = c.availability
    if status is Availability.UP:
        since = c.started_at
    elif c.stopping:
        since = c.last_heartbeat
    else:
        intervals = (
            queries.LATE_AFTER_INTERVALS
            if status is Availability.LATE
            else queries.DOWN_AFTER_INTERVALS
        )
        since = c.last_heartbeat + timedelta(seconds=intervals * c.interval)
    return Instance(
        service=c.service,
        site=c.site,
        instance=c.instance,
        host=c.host,
        pid=c.pid,
        status=status,
        since=since,
        last_seen=c.last_heartbeat,
        heartbeat_age=c.age,
        uptime=c.uptime,
        inflight=c.inflight,
        processed=c.processed,
        failed=c.failed,
        progress=c.progress,
    )


class StoreSource:
    """Reads the store named by ``url``; connects on first use."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        cache_ttl: float = 1.0,
        forget_after: float | None = None,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._forget_after = forget_after  # instances silent for longer are not listed
        self._cache = TtlCache(cache_ttl)
        self._store: Store | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, store: Store, cache_ttl: float = 1.0) -> StoreSource:
        """A source over an already open store (which the caller closes)."""
        source = cls("", cache_ttl=cache_ttl)
        source._store = store
        return source

    async def _open(self) -> Store:
        async with self._lock:
            if self._store is None:
                try:
                    self._store = await asyncio.wait_for(
                        Store.open(self._url, migrate=True), self._timeout
                    )
                except (SQLAlchemyError, OSError, TimeoutError) as exc:
                    raise StoreUnavailable(
                        f"the message store cannot be opened ({type(exc).__name__}: {exc}); "
                        "check [store] url and that the database is running"
                    ) from None
            return self._store

    async def _cached(self, what: str, key: Hashable, call: Any) -> Any:
        """An aggregate shared by every viewer for ``cache_ttl`` seconds."""
        return await self._cache.get(key, lambda: self._run(what, call))

    async def _run(self, what: str, call: Any) -> Any:
        store = await self._open()
        try:
            return await asyncio.wait_for(call(store), self._timeout)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(
                f"the message store failed to {what} ({type(exc).__name__}); "
                "check that the database is running"
            ) from None

    async def components(self) -> list[Instance]:
        rows = await self._cached(
            "list components",
            "components",
            lambda s: queries.components(s, forget_after=self._forget_after),
        )
        return [instance_of(c) for c in rows]

    async def traffic(self, window: float, bucket: float) -> Traffic:
        data: Traffic = await self._cached(
            "compute traffic",
            ("traffic", window, bucket),
            lambda s: queries.traffic(
                s, window=timedelta(seconds=window), bucket=timedelta(seconds=bucket)
            ),
        )
        return data

    async def flows(self, window: float) -> Flows:
        found: Flows = await self._cached(
            "trace the flows",
            ("flows", window),
            lambda s: flows(s, timedelta(seconds=window)),
        )
        return found

    async def service_stats(self, service: str, window: float, bucket: float) -> ServiceStats:
        found: ServiceStats = await self._cached(
            "read the service's deliveries",
            ("service", service, window, bucket),
            lambda s: service_stats(s, service, window, bucket),
        )
        return found

    async def counts_by_service(self) -> dict[str, dict[str, int]]:
        per_service: dict[str, dict[str, int]] = await self._cached(
            "count states", "states", queries.counts_by_state
        )
        return per_service

    async def oldest_pending(self) -> dict[str, datetime]:
        oldest: dict[str, datetime] = await self._cached(
            "find the oldest unfinished deliveries", "oldest", oldest_pending
        )
        return oldest

    async def counts_by_state(self) -> dict[str, int]:
        per_service = await self.counts_by_service()
        totals: dict[str, int] = {}
        for states in per_service.values():
            for state, count in states.items():
                totals[state] = totals.get(state, 0) + count
        return totals

    async def list_messages(
        self, filters: MessageFilter, limit: int, cursor: str | None
    ) -> MessagePage:
        page: MessagePage = await self._run(
            "list messages", lambda s: queries.list_messages(s, filters, limit, cursor)
        )
        return page

    async def get_message(self, message_id: str) -> MessageView | None:
        detail: queries.MessageDetail | None = await self._run(
            "read the message", lambda s: queries.get_message(s, message_id)
        )
        if detail is None:
            return None
        return MessageView(
            envelope=detail.envelope.redacted(),
            deliveries=list[DeliverySummary](detail.deliveries),
            timeline=detail.timeline(),
            chain=detail.chain(),
        )

    async def bodies(self, ids: list[str]) -> dict[str, Any]:
        if not ids:
            return {}

        async def read(store: Store) -> dict[str, Any]:
            query = select(messages.c.id, messages.c.body).where(messages.c.id.in_(ids))
            async with store.engine.connect() as conn:
                return {row.id: row.body for row in await conn.execute(query)}

        found: dict[str, Any] = await self._run("read message bodies", read)
        return found

    async def list_reports(
        self, level: str | None, source: str | None, limit: int
    ) -> list[ReportView]:
        rows: list[ReportView] = await self._run(
            "list reports", lambda s: queries.list_reports(s, level, source, limit=limit)
        )
        return rows

    async def engine(self) -> AsyncEngine | None:
        return (await self._open()).engine

    async def close(self) -> None:
        if self._store is not None and self._url:
            await self._store.close()
        self._store = None
