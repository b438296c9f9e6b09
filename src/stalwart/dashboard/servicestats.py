"""One service over a time range: throughput, handler latency, failures, attempts and
queue depth, from its deliveries.

One read: the index ``ix_deliveries_service_state_time`` (service, state,
message time) seeked once per state for the messages of the range, so the
cost follows the service's traffic in the range, never the store's size.
Queue depth over time is worked back from the current backlog (the count
table) by the arrivals and completions in each bucket; a message older than
the range that finished in it is not seen, so early points may read low.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from stalwart.dashboard.backlog import PENDING_STATES
from stalwart.envelope import DeliveryState, utcnow
from stalwart.store import Store
from stalwart.store.schema import deliveries, delivery_state_counts

__all__ = ["ROW_LIMIT", "ServiceStats", "service_stats"]

ROW_LIMIT = 200_000  # beyond, the range is cut short (the page says so)
_DONE_AT = ("consumed_at", "dead_at", "expired_at", "rejected_at")
_FAILED_STATES = ("failed", "dead", "rejected", "expired")


@dataclass
class ServiceStats:
    """Per-bucket series (oldest first) and totals over the range."""

    start: datetime
    bucket: float
    arrived: list[int]
    consumed: list[int]
    failed: list[int]
    latency_p50: list[float | None]
    latency_p95: list[float | None]
    depth: list[int]
    reasons: list[tuple[str, int]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    backlog: int = 0
    dead: int = 0
    truncated: bool = False

    @property
    def totals(self) -> dict[str, int]:
        return {
            "arrived": sum(self.arrived),
            "consumed": sum(self.consumed),
            "failed": sum(self.failed),
        }


async def service_stats(
    store: Store, service: str, window: float, bucket: float, now: datetime | None = None
) -> ServiceStats:
    """``service``'s deliveries of messages created in the last ``window`` seconds."""
    count = max(1, int(-(-window // bucket)))
    end = now or utcnow()
    start = end - timedelta(seconds=count * bucket)
    d = deliveries.c
    query = (
        select(
            d.message_created_at,
            d.state,
            d.received_at,
            d.attempts,
            d.reason,
            d.failed_at,
            *(d[c] for c in _DONE_AT),
        )
        .where(
            d.service == service,
            d.state.in_([s.value for s in DeliveryState]),
            d.message_created_at >= start,
        )
        .limit(ROW_LIMIT)
    )
    counts_query = select(delivery_state_counts.c.state, delivery_state_counts.c.n).where(
        delivery_state_counts.c.service == service
    )
    async with store.engine.connect() as conn:
        rows = list(await conn.execute(query))
        states = {state: n for state, n in await conn.execute(counts_query)}

    def slot(when: datetime | None) -> int | None:
        if when is None:
            return None
        i = int((when - start).total_seconds() // bucket)
        return i if 0 <= i < count else None

    arrived, consumed, failed, done = ([0] * count for _ in range(4))
    latencies: list[list[float]] = [[] for _ in range(count)]
    reasons: dict[str, int] = {}
    attempts: dict[str, int] = {}
    for row in rows:
        if (i := slot(row.message_created_at)) is not None:
            arrived[i] += 1
        finished = next((row._mapping[c] for c in _DONE_AT if row._mapping[c] is not None), None)
        if (i := slot(finished)) is not None:
            done[i] += 1
        if row.state == DeliveryState.CONSUMED and (i := slot(row.consumed_at)) is not None:
            consumed[i] += 1
            if row.received_at is not None:
                latencies[i].append((row.consumed_at - row.received_at).total_seconds())
        if (i := slot(row.failed_at)) is not None:
            failed[i] += 1
        if row.state in _FAILED_STATES or row.failed_at is not None:
            reason = (row.reason or "no reason given").splitlines()[0][:200]
            reasons[reason] = reasons.get(reason, 0) + 1
        key = str(row.attempts) if row.attempts < 4 else "4+"
        attempts[key] = attempts.get(key, 0) + 1
    backlog = sum(states.get(s.value, 0) for s in PENDING_STATES)
    depth = [0] * count
    level = backlog
    for i in range(count - 1, -1, -1):
        depth[i] = max(level, 0)
        level -= arrived[i] - done[i]
    return ServiceStats(
        start=start,
        bucket=bucket,
        arrived=arrived,
        consumed=consumed,
        failed=failed,
        latency_p50=[_quantile(v, 0.5) for v in latencies],
        latency_p95=[_quantile(v, 0.95) for v in latencies],
        depth=depth,
        reasons=sorted(reasons.items(), key=lambda kv: -kv[1])[:10],
        attempts=dict(sorted(attempts.items())),
        backlog=backlog,
        dead=states.get(DeliveryState.DEAD.value, 0),
        truncated=len(rows) >= ROW_LIMIT,
    )


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]
