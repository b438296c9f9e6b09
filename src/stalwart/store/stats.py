"""Reports, components with availability, traffic over time, and counts by state.

Re-exported by :mod:`stalwart.store.queries`; see there for the conventions.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, Table, cast, func, or_, select

from stalwart.envelope import utcnow
from stalwart.messages import ReportLevel
from stalwart.store._models import (
    DOWN_AFTER_INTERVALS,
    LATE_AFTER_INTERVALS,
    Availability,
    ComponentView,
    Edge,
    ReportView,
    TopicSeries,
    Traffic,
)
from stalwart.store._rows import LEVEL_RANK
from stalwart.store._store import Store
from stalwart.store.schema import components as components_table
from stalwart.store.schema import (
    deliveries,
    delivery_state_counts,
    messages,
    reports,
    traffic_edge_minutes,
    traffic_topic_minutes,
)

__all__ = [
    "availability",
    "bucket_index",
    "components",
    "counts_by_state",
    "delivered_since",
    "list_reports",
    "traffic",
]


async def list_reports(
    store: Store,
    level: ReportLevel | str | None = None,
    source: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[ReportView]:
    """Reports newest first; ``level`` is a minimum (``warning`` includes errors)."""
    query = select(reports).order_by(reports.c.at.desc(), reports.c.id.desc())
    if level is not None:
        query = query.where(reports.c.level_rank >= LEVEL_RANK[ReportLevel(level).value])
    if source:
        query = query.where(reports.c.source == source)
    if since is not None:
        query = query.where(reports.c.at >= since)
    async with store.engine.connect() as conn:
        rows = await conn.execute(query.limit(max(1, min(limit, 10_000))))
        return [ReportView.model_validate(dict(r._mapping)) for r in rows]


def availability(age: float, interval: float, stopping: bool = False) -> Availability:
    """``up``, ``late`` after 2 missed intervals, ``down`` after 5 (or once stopped)."""
    if age > DOWN_AFTER_INTERVALS * interval:
        return Availability.DOWN
    if age > LATE_AFTER_INTERVALS * interval:
        return Availability.DOWN if stopping else Availability.LATE
    return Availability.UP


async def components(
    store: Store, now: datetime | None = None, forget_after: float | None = None
) -> list[ComponentView]:
    """Every service instance seen, by service and instance, with its availability;
    without those silent for over ``forget_after`` seconds (long down: forgotten)."""
    now = now or utcnow()
    query = select(components_table).order_by(
        components_table.c.service, components_table.c.instance
    )
    if forget_after is not None:
        cutoff = now - timedelta(seconds=forget_after)
        query = query.where(components_table.c.last_heartbeat >= cutoff)
    async with store.engine.connect() as conn:
        rows = list(await conn.execute(query))
    views = []
    for r in rows:
        data: dict[str, Any] = dict(r._mapping)
        age = max((now - r.last_heartbeat).total_seconds(), 0.0)
        data.update(age=age, availability=availability(age, r.interval, r.stopping))
        views.append(ComponentView.model_validate(data))
    return views


def bucket_index(dialect: str, column: Any, start: datetime, seconds: int) -> ColumnElement[Any]:
    """Index of the ``seconds``-wide bucket (from ``start``) that ``column`` falls in."""
    origin = int(start.timestamp())
    if dialect == "postgresql":
        return cast(func.floor((func.extract("epoch", column) - origin) / seconds), Integer)
    return (cast(func.strftime("%s", column), Integer) - origin) // seconds


def delivered_since(start: datetime) -> ColumnElement[bool]:
    """Deliveries of messages created from ``start`` on, as a range of
    ``ix_deliveries_message_time``, to AND with ``messages.created_at >= start`` in a join.

    Without it the planner may hash every delivery in the store to join a
    window's messages. Deliveries recorded before their message's time was
    kept (NULL) are included; the join's condition on the message decides.
    """
    column = deliveries.c.message_created_at
    return or_(column >= start, column.is_(None))


def _from_minutes(start: datetime, seconds: int, count: int) -> tuple[Select[Any], Select[Any]]:
    """Counts per (topic | edge, bucket) summed from the per-minute counts the
    database keeps: ``seconds`` is a whole number of minutes, ``start`` a multiple of it."""
    first, width = int(start.timestamp()) // 60, seconds // 60

    def summed(table: Table, *keys: str) -> Select[Any]:
        index = ((table.c.minute - first) // width).label("b")
        columns = [table.c[k] for k in keys]
        return (
            select(*columns, index, func.sum(table.c.n))
            .where(table.c.minute >= first, table.c.minute < first + count * width)
            .group_by(*columns, index)
        )

    return summed(traffic_topic_minutes, "topic"), summed(
        traffic_edge_minutes, "sender_service", "service"
    )


def _from_messages(dialect: str, start: datetime, seconds: int) -> tuple[Select[Any], Select[Any]]:
    """Counts per (topic | edge, bucket) grouped from the messages of the window and
    their deliveries (for buckets the per-minute counts cannot make)."""
    index = bucket_index(dialect, messages.c.created_at, start, seconds).label("b")
    by_topic = (
        select(messages.c.topic, index, func.count())
        .where(messages.c.created_at >= start)
        .group_by(messages.c.topic, index)
    )
    by_edge = (
        select(messages.c.sender_service, deliveries.c.service, index, func.count())
        .join(deliveries, deliveries.c.message_id == messages.c.id)
        .where(messages.c.created_at >= start, delivered_since(start))
        .group_by(messages.c.sender_service, deliveries.c.service, index)
    )
    return by_topic, by_edge


async def traffic(
    store: Store,
    window: timedelta = timedelta(hours=1),
    bucket: timedelta = timedelta(minutes=1),
    now: datetime | None = None,
) -> Traffic:
    """Counts per topic and bucket, and the rates of each sender->service edge,
    over the last ``window``.

    The window is cut into buckets of ``bucket`` (whole seconds, at least 1)
    aligned on multiples of their width, the last one holding ``now``;
    the sender side is the service part of ``sender``, the service side comes
    from the deliveries. An edge's ``recent_rate`` is over the last two
    buckets, so it follows what is happening now. Buckets of whole minutes
    are summed from the counts kept per minute (a day is a few thousand rows);
    others are grouped from the window's messages and their deliveries.
    """
    seconds = max(1, int(bucket.total_seconds()))
    count = max(1, -(-int(window.total_seconds()) // seconds))
    # Buckets aligned on multiples of their width; the last one holds "now".
    last = int((now or utcnow()).timestamp()) // seconds * seconds
    start = datetime.fromtimestamp(last - (count - 1) * seconds, UTC)
    if seconds % 60 == 0:
        by_topic, by_edge = _from_minutes(start, seconds, count)
    else:
        by_topic, by_edge = _from_messages(store.dialect, start, seconds)
    topics: dict[str, list[int]] = defaultdict(lambda: [0] * count)
    edges: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * count)
    async with store.engine.connect() as conn:
        for topic, b, n in await conn.execute(by_topic):
            if 0 <= (b := int(b)) < count:
                topics[topic][b] += int(n)
        for source, target, b, n in await conn.execute(by_edge):
            if 0 <= (b := int(b)) < count:
                edges[(source, target)][b] += int(n)
    span = float(seconds * count)
    return Traffic(
        start=start,
        window=span,
        bucket=float(seconds),
        series=[TopicSeries(topic=t, counts=c) for t, c in sorted(topics.items())],
        edges=[
            Edge(
                source=s,
                target=t,
                count=sum(c),
                rate=sum(c) / span,
                recent_rate=sum(c[-2:]) / (2 * seconds),
            )
            for (s, t), c in sorted(edges.items())
            if sum(c)
        ],
    )


async def counts_by_state(store: Store) -> dict[str, dict[str, int]]:
    """Number of deliveries per service and state: ``{"qa": {"consumed": 10, ...}}``.

    Read from the counts the database keeps as deliveries change (a few rows,
    whatever the size of the store).
    """
    counts = delivery_state_counts.c
    query = select(counts.service, counts.state, counts.n).where(counts.n > 0)
    out: dict[str, dict[str, int]] = defaultdict(dict)
    async with store.engine.connect() as conn:
        for service, state, n in await conn.execute(query):
            out[service][state] = n
    return dict(out)
