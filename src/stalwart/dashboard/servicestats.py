"""One service over a time range: throughput, handler latency, failures, attempts and
queue depth, from its deliveries.

Every read goes through the index ``ix_deliveries_service_state_time``
(service, state, message time), one seek per state, so the cost follows the
service's traffic in the range, never the store's size:

- counts per state and bucket (of the message's time), exact, from the index
  alone;
- failures by reason, exact, from the few deliveries in a failing state;
- latency, attempts and when deliveries finished, from a sample of at most
  about ``SAMPLE`` deliveries picked by the last digit of the message id (in
  the index, so unpicked rows are never read), scaled back up.

Queue depth over time is worked back from the current backlog (the count
table) by the arrivals and completions of each bucket; a message older than
the range that finished within it is not seen, so early points may read low.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from stalwart.dashboard.backlog import PENDING_STATES
from stalwart.envelope import DeliveryState, utcnow
from stalwart.store import Store
from stalwart.store.schema import deliveries, delivery_state_counts
from stalwart.store.stats import bucket_index

__all__ = ["SAMPLE", "ServiceStats", "service_stats"]

SAMPLE = 1000
_DIGITS = "0123456789abcdef"
_FAILING = (
    DeliveryState.FAILED,
    DeliveryState.DEAD,
    DeliveryState.REJECTED,
    DeliveryState.EXPIRED,
)
_STATES = [s.value for s in DeliveryState]


@dataclass
class ServiceStats:
    """Per-bucket series (oldest first, by the message's time) and totals over the range."""

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
    sampled: int = 1  # 1 in how many deliveries latency, attempts and depth are read from

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
    start = (now or utcnow()) - timedelta(seconds=count * bucket)
    d = deliveries.c
    in_range = (d.service == service, d.state.in_(_STATES), d.message_created_at >= start)
    index = bucket_index(store.dialect, d.message_created_at, start, int(bucket)).label("b")
    counted = select(d.state, index, func.count()).where(*in_range).group_by(d.state, index)
    failing = (
        select(d.reason, func.count())
        .where(d.service == service, d.state.in_([s.value for s in _FAILING]))
        .where(d.message_created_at >= start)
        .group_by(d.reason)
    )
    states_now = select(delivery_state_counts.c.state, delivery_state_counts.c.n).where(
        delivery_state_counts.c.service == service
    )
    async with store.engine.connect() as conn:
        # Index only: deliveries per state and bucket of the message's time.
        arrivals = list(await conn.execute(counted))
        step = _step(sum(n for _, _, n in arrivals))
        done_at = func.coalesce(d.consumed_at, d.dead_at, d.expired_at, d.rejected_at)
        sample_query = select(
            d.message_created_at, d.received_at, d.consumed_at, done_at.label("done_at"), d.attempts
        ).where(*in_range)
        if step > 1:  # the id's last digit is in the index: unpicked rows are never read
            sample_query = sample_query.where(
                func.substr(d.message_id, -1).in_(list(_DIGITS[: 16 // step]))
            )
        sample = list(await conn.execute(sample_query)) if arrivals else []
        reasons = [(r or "no reason given", n) for r, n in await conn.execute(failing)]
        states = {state: n for state, n in await conn.execute(states_now)}
    return _fold(start, bucket, count, arrivals, sample, step, reasons, states)


def _step(total: int) -> int:
    """Read 1 in ``step`` deliveries (1, 2, 4, 8 or 16) to keep near ``SAMPLE``."""
    step = 1
    while step < 16 and total / step > SAMPLE:
        step *= 2
    return step


def _fold(
    start: datetime,
    bucket: float,
    count: int,
    arrivals: list[Any],
    sample: list[Any],
    step: int,
    reasons: list[tuple[str, int]],
    states: dict[str, int],
) -> ServiceStats:
    def slot(when: datetime | None) -> int | None:
        if when is None:
            return None
        i = int((when - start).total_seconds() // bucket)
        return i if 0 <= i < count else None

    arrived, consumed, failed, done = ([0] * count for _ in range(4))
    for state, b, n in arrivals:
        if 0 <= (k := int(b)) < count:
            arrived[k] += n
            consumed[k] += n if state == DeliveryState.CONSUMED else 0
            failed[k] += n if state in _FAILING else 0
    latencies: list[list[float]] = [[] for _ in range(count)]
    attempts: dict[str, int] = {}
    for row in sample:
        if (i := slot(row.done_at)) is not None:
            done[i] += step
        i = slot(row.consumed_at)
        if i is not None and row.received_at is not None:
            latencies[i].append((row.consumed_at - row.received_at).total_seconds())
        key = str(row.attempts) if row.attempts < 4 else "4+"
        attempts[key] = attempts.get(key, 0) + step
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
        reasons=sorted(((r.splitlines()[0][:200], n) for r, n in reasons), key=lambda x: -x[1])[
            :10
        ],
        attempts=dict(sorted(attempts.items())),
        backlog=backlog,
        dead=states.get(DeliveryState.DEAD.value, 0),
        sampled=step,
    )


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]
