"""Refreshing the scrape-time gauges of ``/metrics``.

Each source is asked through :func:`~stalwart.dashboard.views.guarded`: one
that fails leaves its gauges as they were cleared (absent), never a failed
scrape. Only count tables, index seeks and small tables are read.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.bus.outbox import spool_status
from stalwart.dashboard import views
from stalwart.dashboard.busview import queue_infos
from stalwart.dashboard.models import Instance, MessageFilter, MessagePage, QueueInfo
from stalwart.dashboard.state import DashboardState
from stalwart.errors import StalwartError
from stalwart.ha.status import status as ha_status

__all__ = ["refresh"]


async def refresh(state: DashboardState) -> None:
    """Bring every scrape-time gauge up to date."""
    metrics, source = state.metrics, state.source
    counted = "the store's state counts"
    (
        (comps, _),
        (totals, _),
        (per_service, _),
        (oldest, _),
        (newest, _),
        (engine, _),
    ) = await asyncio.gather(
        views.guarded("the store's components", source.components(), list[Instance]()),
        views.guarded(counted, source.counts_by_state(), {}),
        views.guarded(counted, source.counts_by_service(), {}),
        views.guarded("the store's backlog", source.oldest_pending(), {}),
        views.guarded(
            "the store", source.list_messages(MessageFilter(), 1, None), MessagePage(items=[])
        ),
        views.guarded("the store", source.engine(), None),
    )
    queues: list[QueueInfo] = []
    if state.transport is not None and state.bus_error is None:
        queues, _ = await views.guarded("the bus", queue_infos(state.transport), [])
    metrics.set_states(totals)
    metrics.set_services(per_service, oldest)
    metrics.set_queues(queues)
    metrics.set_instances(comps)
    metrics.set_bus(state.link.reachable)
    metrics.set_lag(state.hub.newest, newest.items[0].created_at if newest.items else None)
    metrics.set_leaders(await _leaders(engine))
    metrics.set_outbox(*await _outbox(state.settings.bus.outbox), time.time())
    hub = state.hub
    metrics.set_live(hub.seen, hub.dropped, hub.viewers)


async def _leaders(engine: AsyncEngine | None) -> dict[str, str]:
    """role -> live holder, from the HA lease table (a few rows)."""
    if engine is None:
        return {}
    found, _ = await views.guarded("the HA tables", ha_status(engine, transitions=0), None, 5.0)
    if found is None:
        return {}
    return {lease.role: lease.holder for lease in found.leases if lease.live and lease.holder}


async def _outbox(path: str) -> tuple[int, float | None]:
    """What waits in this host's spool: (count, oldest Unix time)."""
    try:
        return await asyncio.to_thread(_read_spool, path)
    except (StalwartError, OSError):
        return 0, None


def _read_spool(path: str) -> tuple[int, float | None]:
    if not Path(path).is_file():  # never create a spool by looking at it
        return 0, None
    rows = spool_status(path)
    oldest = [r.oldest for r in rows if r.oldest is not None and r.pending]
    return sum(r.pending for r in rows), min(oldest, default=None)
