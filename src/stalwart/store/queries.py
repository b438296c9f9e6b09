"""The read API of the store, shared by the CLI and the dashboard.

Every function takes an open :class:`~stalwart.store.Store` and returns frozen
pydantic models (``model_dump(mode="json")`` gives the JSON the dashboard
serves). Lists are newest first. Reports, components and traffic live in
:mod:`stalwart.store.stats` and are re-exported here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import ColumnElement, func, literal_column, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from stalwart.envelope import Envelope
from stalwart.store._filters import (
    BadCursor,
    before_cursor,
    conditions,
    encode_cursor,
    in_delivery_time,
    index_range,
    scan_first,
)
from stalwart.store._models import (
    DOWN_AFTER_INTERVALS,
    LATE_AFTER_INTERVALS,
    Availability,
    ChainNode,
    ComponentView,
    DeliverySummary,
    DeliveryView,
    Edge,
    MessageDetail,
    MessageFilter,
    MessagePage,
    MessageSummary,
    ReportView,
    SentView,
    TopicSeries,
    Traffic,
    TransitionView,
)
from stalwart.store._store import Store
from stalwart.store._times import TimeFormatError, parse_duration, parse_when
from stalwart.store.schema import STATE_COLUMNS, deliveries, messages, transitions
from stalwart.store.stats import components, counts_by_state, list_reports, traffic

__all__ = [
    "DOWN_AFTER_INTERVALS",
    "FEW_IN_RANGE",
    "LATE_AFTER_INTERVALS",
    "MAX_CHAIN_DEPTH",
    "MAX_CHAIN_NODES",
    "MAX_LIMIT",
    "SCAN_WINDOWS",
    "TEXT_WINDOWS",
    "Availability",
    "BadCursor",
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
    "TimeFormatError",
    "TopicSeries",
    "Traffic",
    "TransitionView",
    "components",
    "counts_by_state",
    "find_messages",
    "get_message",
    "list_messages",
    "list_reports",
    "parse_duration",
    "parse_when",
    "traffic",
]

MAX_LIMIT: Final = 1000
MAX_CHAIN_DEPTH: Final = 50
MAX_CHAIN_NODES: Final = 500
# Newest messages walked, in turn, before falling back to the filters' indexes
# (see list_messages).
SCAN_WINDOWS: tuple[int, ...] = (2_000, 20_000)
# A topic or sender prefix whose index range holds fewer entries than this is
# read through that index (its rows sorted) instead of walking the newest
# messages: the walk would read whole windows for nothing when few or none match
# (a part's events, ``sys.ha.#``, on a store of pipeline traffic).
FEW_IN_RANGE = 1_000
# The same for full-text search on SQLite, whose matches are usually sparser.
TEXT_WINDOWS: tuple[int, ...] = (2_000, 20_000, 200_000)

# PostgreSQL, for the page's transaction only. A page is a bounded walk or an
# index range: parallel workers add only their start-up (tens of ms on a busy
# host), and a cached generic plan would ignore how selective this filter's
# values are (``state = 'dead'`` against ``'consumed'``).
_PG_PAGE_SETTINGS: Final = text(
    "SELECT set_config('max_parallel_workers_per_gather', '0', true), "
    "set_config('plan_cache_mode', 'force_custom_plan', true)"
)

_SUMMARY_COLUMNS: Final = (
    messages.c.id,
    messages.c.topic,
    messages.c.kind,
    messages.c.sender,
    messages.c.correlation_id,
    messages.c.causation_id,
    messages.c.created_at,
    messages.c.size,
)


async def _states(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    if ids:
        query = select(deliveries.c.message_id, deliveries.c.service, deliveries.c.state).where(
            deliveries.c.message_id.in_(ids)
        )
        for mid, service, state in await conn.execute(query):
            out[mid][service] = state
    return out


async def _summaries(conn: AsyncConnection, rows: Sequence[Any]) -> list[MessageSummary]:
    states = await _states(conn, [r.id for r in rows])
    return [
        MessageSummary.model_validate({**r._mapping, "states": states.get(r.id, {})}) for r in rows
    ]


async def _scan(
    conn: AsyncConnection,
    dialect: str,
    f: MessageFilter,
    keyset: list[Any],
    window: int,
    limit: int,
) -> list[Any] | None:
    """The page from the newest ``window`` messages, or None if they hold too few matches."""
    order = (messages.c.created_at.desc(), messages.c.id.desc())
    bound = await conn.scalar(
        select(messages.c.created_at).where(*keyset).order_by(*order).offset(window).limit(1)
    )
    scan = conditions(dialect, f, scan=True) + keyset
    if bound is not None:
        scan.append(messages.c.created_at >= bound)
    query = select(*_SUMMARY_COLUMNS).where(*scan).order_by(*order).limit(limit + 1)
    found = list(await conn.execute(query))
    return found if len(found) > limit or bound is None else None


async def _few_in_range(conn: AsyncConnection, f: MessageFilter) -> bool:
    """True when ``f``'s index range holds fewer than :data:`FEW_IN_RANGE` messages.

    Reads at most that many entries of the index, in its order (so that the
    planner never prefers a sequential scan for a broad prefix), whatever the
    store's size.
    """
    found = index_range(f)
    if found is None:
        return False
    column, bound = found
    first = select(column).where(bound).order_by(column).limit(FEW_IN_RANGE).subquery()
    count = await conn.scalar(select(func.count()).select_from(first))
    return int(count or 0) < FEW_IN_RANGE


async def _text_scan(
    conn: AsyncConnection,
    f: MessageFilter,
    keyset: list[Any],
    window: int,
    limit: int,
) -> list[Any] | None:
    """SQLite full-text page from the newest ``window`` messages, or None if too few match.

    Only FTS5 rows from the smallest rowid in the window on are matched (a seek
    in the doclists), so the cost follows the window, not every match in the
    store. Exact whatever the rowid order: the floor is taken over the
    window's rows themselves.
    """
    order = (messages.c.created_at.desc(), messages.c.id.desc())
    bound = await conn.scalar(
        select(messages.c.created_at).where(*keyset).order_by(*order).offset(window).limit(1)
    )
    if bound is None:
        return None  # the whole store is smaller than the window: the plain query is as cheap
    newest = [*keyset, messages.c.created_at >= bound]
    # ``rowid + 0``: a bare min(rowid) walks the table from rowid 1 instead of the time index.
    lowest: Any = func.min(literal_column("messages.rowid") + 0)
    floor = await conn.scalar(select(lowest).where(*newest))
    where = conditions("sqlite", f, text_floor=int(floor or 0)) + newest
    query = select(*_SUMMARY_COLUMNS).where(*where).order_by(*order).limit(limit + 1)
    found = list(await conn.execute(query))
    return found if len(found) > limit else None


async def _delivery_time_page(
    conn: AsyncConnection,
    dialect: str,
    f: MessageFilter,
    after: str | None,
    keyset: list[Any],
    limit: int,
) -> list[Any]:
    """The page of one service and state: that pair's deliveries in their message's time.

    ``ix_deliveries_service_state_time`` yields them in order, so a page reads
    about ``limit`` deliveries and messages whether the pair is rare or common.
    Deliveries whose transitions did not carry the message's time (an older
    runtime) sit in the same index's NULL range; they are few, ordered through
    their messages and merged in.
    """
    d = deliveries.c
    joined = deliveries.join(messages, messages.c.id == d.message_id)
    rest = f.model_copy(update={"service": None, "state": None})
    where = [d.service == f.service, d.state == f.state, *conditions(dialect, rest), *keyset]
    timed: list[ColumnElement[bool]] = [d.message_created_at.is_not(None)]
    if after:
        timed.append(before_cursor(after, d.message_created_at, d.message_id))
    if f.since:
        timed.append(d.message_created_at >= f.since)
    if f.until:
        timed.append(d.message_created_at < f.until)
    page = select(*_SUMMARY_COLUMNS).select_from(joined).limit(limit + 1)
    ordered = page.where(*where, *timed).order_by(d.message_created_at.desc(), d.message_id.desc())
    untimed = page.where(*where, d.message_created_at.is_(None)).order_by(
        messages.c.created_at.desc(), messages.c.id.desc()
    )
    rows = [*await conn.execute(ordered), *await conn.execute(untimed)]
    rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return rows[: limit + 1]


async def list_messages(
    store: Store,
    filters: MessageFilter | None = None,
    limit: int = 50,
    after: str | None = None,
) -> MessagePage:
    """Messages matching ``filters``, newest first, ``limit`` per page (at most 1000).

    Keyset pagination on ``(created_at, id)``: pass the page's ``next_cursor``
    as ``after`` to get the next, older page. Raises :class:`BadCursor` for a
    cursor that did not come from here.

    Plan: a filter that many messages match is fastest by walking the newest
    messages backwards and testing each; one that few match, through its own
    index. So for topic patterns, sender prefixes, services and states the
    page is first sought among the newest :data:`SCAN_WINDOWS` messages
    (bounded walks, small then larger); only if that window holds too few matches does the query
    go through the filters' indexes. On PostgreSQL, services and states alone
    are left to its planner, which weighs both plans from the statistics.
    Full-text search on SQLite does the same over :data:`TEXT_WINDOWS`,
    matching only the window's part of the FTS index.
    """
    limit = max(1, min(limit, MAX_LIMIT))
    f = filters or MessageFilter()
    order = (messages.c.created_at.desc(), messages.c.id.desc())
    keyset = [before_cursor(after)] if after else []
    async with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            await conn.execute(_PG_PAGE_SETTINGS)
        rows: list[Any] | None = None
        if in_delivery_time(f):
            rows = await _delivery_time_page(conn, store.dialect, f, after, keyset, limit)
        elif scan_first(f, store.dialect) and not await _few_in_range(conn, f):
            for window in SCAN_WINDOWS:
                rows = await _scan(conn, store.dialect, f, keyset, window, limit)
                if rows is not None:
                    break
        elif store.dialect == "sqlite" and f.text and f.text.split():
            for window in TEXT_WINDOWS:
                rows = await _text_scan(conn, f, keyset, window, limit)
                if rows is not None:
                    break
        if rows is None:
            where = conditions(store.dialect, f) + keyset
            query = select(*_SUMMARY_COLUMNS).where(*where).order_by(*order).limit(limit + 1)
            rows = list(await conn.execute(query))
        items = await _summaries(conn, rows[:limit])
    more = len(rows) > limit
    cursor = encode_cursor(items[-1].created_at, items[-1].id) if more and items else None
    return MessagePage(items=items, next_cursor=cursor)


async def _timeline(conn: AsyncConnection, message_id: str) -> list[DeliveryView]:
    history: dict[str, list[TransitionView]] = defaultdict(list)
    query = (
        select(transitions)
        .where(transitions.c.message_id == message_id)
        .order_by(transitions.c.at, transitions.c.attempt)
    )
    for t in await conn.execute(query):
        history[t.service].append(TransitionView.model_validate(dict(t._mapping)))
    query = (
        select(deliveries)
        .where(deliveries.c.message_id == message_id)
        .order_by(deliveries.c.service)
    )
    views = []
    for d in await conn.execute(query):
        times = {s: getattr(d, c) for s, c in STATE_COLUMNS.items() if getattr(d, c) is not None}
        views.append(
            DeliveryView.model_validate(
                {**d._mapping, "times": times, "transitions": history.get(d.service, [])}
            )
        )
    return views


async def _ancestors(conn: AsyncConnection, causation_id: str | None) -> list[MessageSummary]:
    """Causes of a message, root first (stops at a missing message, a cycle or the cap)."""
    chain: list[Any] = []
    seen: set[str] = set()
    while causation_id and causation_id not in seen and len(chain) < MAX_CHAIN_DEPTH:
        seen.add(causation_id)
        query = select(*_SUMMARY_COLUMNS).where(messages.c.id == causation_id)
        row = (await conn.execute(query)).first()
        if row is None:
            break
        chain.append(row)
        causation_id = row.causation_id
    return list(reversed(await _summaries(conn, chain)))


async def _descendants(conn: AsyncConnection, root: MessageSummary) -> tuple[ChainNode, bool]:
    """The tree of messages caused by ``root``, breadth first, capped in depth and size."""
    children: dict[str, list[MessageSummary]] = defaultdict(list)
    frontier, seen, truncated = [root.id], {root.id}, False
    for _depth in range(MAX_CHAIN_DEPTH):
        if not frontier:
            break
        query = (
            select(*_SUMMARY_COLUMNS)
            .where(messages.c.causation_id.in_(frontier))
            .order_by(messages.c.created_at, messages.c.id)
            .limit(MAX_CHAIN_NODES + 1 - len(seen))
        )
        rows = [r for r in await conn.execute(query) if r.id not in seen]
        frontier = []
        for summary in await _summaries(conn, rows):
            seen.add(summary.id)
            children[summary.causation_id or ""].append(summary)
            frontier.append(summary.id)
        if len(seen) > MAX_CHAIN_NODES:
            truncated = True
            break
    else:
        truncated = bool(frontier)

    def build(node: MessageSummary) -> ChainNode:
        return ChainNode.of(node, [build(c) for c in children.get(node.id, [])])

    return build(root), truncated


async def get_message(store: Store, message_id: str) -> MessageDetail | None:
    """The envelope, its life cycle (``sent``, then each service's deliveries) and its
    causal chain; None if not stored."""
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
        if row is None:
            return None
        envelope = Envelope.model_construct(
            id=row.id,
            topic=row.topic,
            kind=row.kind,
            sender=row.sender,
            correlation_id=row.correlation_id,
            causation_id=row.causation_id,
            reply_to=row.reply_to,
            created_at=row.created_at,
            expires_at=row.expires_at,
            headers=row.headers,
            body=row.body,
            token="***" if row.signed else None,
            attempt=row.attempt,
        )
        (summary,) = await _summaries(conn, [row])
        descendants, truncated = await _descendants(conn, summary)
        return MessageDetail(
            envelope=envelope,
            size=row.size,
            stored_at=row.stored_at,
            sent=SentView(service=row.sender_service, sender=row.sender, at=row.created_at),
            deliveries=await _timeline(conn, message_id),
            ancestors=await _ancestors(conn, row.causation_id),
            descendants=descendants,
            truncated=truncated,
        )


async def find_messages(store: Store, part: str, limit: int = 10) -> list[MessageSummary]:
    """Messages whose id starts or ends with ``part``, newest first, at most ``limit``.

    For the short ids people copy: ``stalwart tail`` prints an id's random end
    (its start is the time, shared by the messages of the same minute). It
    reads every id: on PostgreSQL an index-only walk of ``ix_messages_created``.
    """
    ids = messages.c.id
    matching = or_(ids.startswith(part, autoescape=True), ids.endswith(part, autoescape=True))
    order = (messages.c.created_at.desc(), ids.desc())
    found = select(ids).where(matching).order_by(*order).limit(limit).subquery()
    query = select(*_SUMMARY_COLUMNS).where(ids.in_(select(found.c.id))).order_by(*order)
    async with store.engine.connect() as conn:
        return await _summaries(conn, list(await conn.execute(query)))
