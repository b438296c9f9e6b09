"""Message filters -> SQL conditions, chosen so that an index narrows each one.

Topic patterns become an index range on the pattern's literal prefix plus an
exact regular-expression check (``~`` on PostgreSQL, SQLAlchemy's registered
``regexp`` function on SQLite). Full-text search uses FTS5 on SQLite and a
``tsvector`` on PostgreSQL.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    func,
    literal,
    literal_column,
    not_,
    select,
    text,
    tuple_,
)

from stalwart.errors import StalwartError
from stalwart.store._models import MessageFilter
from stalwart.store.schema import STATE_COLUMNS, deliveries, messages
from stalwart.topics import validate_pattern

__all__ = [
    "BadCursor",
    "before_cursor",
    "conditions",
    "decode_cursor",
    "encode_cursor",
    "index_range",
    "pattern_regex",
    "scan_first",
]


class BadCursor(StalwartError, ValueError):
    """A pagination cursor was not produced by list_messages."""


def pattern_regex(pattern: str) -> str:
    """A regex matching ``'.' + topic`` exactly when ``topic`` matches the AMQP ``pattern``.

    Each word is matched with its leading dot, so ``#`` (zero or more words)
    is simply ``(\\.[^.]+)*``.
    """
    parts = []
    for word in validate_pattern(pattern).split("."):
        if word == "#":
            parts.append(r"(\.[^.]+)*")
        elif word == "*":
            parts.append(r"\.[^.]+")
        else:
            parts.append(r"\." + re.escape(word))
    return "^" + "".join(parts) + "$"


def _prefix_range(column: Any, prefix: str) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``, as an index range (binary collation)."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(column >= prefix, column < upper)


def _topic(pattern: str, scan: bool) -> ColumnElement[bool]:
    words = validate_pattern(pattern).split(".")
    if "*" not in words and "#" not in words:
        return _bare(messages.c.topic, scan) == pattern
    check = (literal(".") + messages.c.topic).regexp_match(pattern_regex(pattern))
    literal_words = []
    for word in words:
        if word in ("*", "#"):
            break
        literal_words.append(word)
    if not literal_words or scan:
        return check
    # 'a.#' also matches the topic 'a' itself; otherwise the prefix is followed by a dot.
    return and_(_prefix_range(messages.c.topic, ".".join(literal_words)), check)


def _bare(column: ColumnElement[Any], scan: bool) -> ColumnElement[Any]:
    """``column``, or in a scan an expression of it that no index serves (``col || ''``)."""
    return column.concat("") if scan else column


def _sender(sender: str, scan: bool) -> ColumnElement[bool]:
    if "/" in sender:
        return _bare(messages.c.sender, scan) == sender
    prefix = sender + ("/" if "@" in sender else "@")
    if scan:
        head: ColumnElement[str] = func.substr(messages.c.sender, 1, len(prefix))
        return head == prefix
    return _prefix_range(messages.c.sender, prefix)


def index_range(f: MessageFilter) -> tuple[Any, ColumnElement[bool]] | None:
    """The indexed column and range that bound a topic pattern's or a sender prefix's
    matches, if any.

    A pattern with a literal prefix (``sys.ha.#``) matches only topics in that
    prefix's range of ``ix_messages_topic``, as ``service@site`` matches only
    the range of its prefix in ``ix_messages_sender``: counting the range's
    first entries says cheaply whether few messages can match.
    """
    if f.topic:
        words = validate_pattern(f.topic).split(".")
        literal_words = []
        for word in words:
            if word in ("*", "#"):
                break
            literal_words.append(word)
        if literal_words and len(literal_words) < len(words):
            column = messages.c.topic
            return column, _prefix_range(column, ".".join(literal_words))
    if f.sender and "/" not in f.sender:
        column = messages.c.sender
        return column, _prefix_range(column, f.sender + ("/" if "@" in f.sender else "@"))
    return None


def _fts_query(words: str) -> str:
    """All of ``words``, each quoted so FTS5 syntax characters are taken literally."""
    tokens = [w.replace('"', '""') for w in words.split()]
    return " ".join(f'"{t}"' for t in tokens)


def _text(dialect: str, words: str, floor: int | None = None) -> ColumnElement[bool]:
    """``floor``: on SQLite, only FTS rows from this rowid on (a seek in FTS5's doclists)."""
    if dialect == "postgresql":
        return literal_column("messages.search_tsv").op("@@")(
            text("plainto_tsquery('simple', :words)").bindparams(words=words)
        )
    sql = "SELECT rowid FROM messages_fts WHERE messages_fts MATCH :q"
    matching = text(sql if floor is None else sql + " AND rowid >= :floor").bindparams(
        q=_fts_query(words)
    )
    if floor is not None:
        matching = matching.bindparams(floor=floor)
    return literal_column("messages.rowid").in_(matching.columns(literal_column("rowid")))


def _by_delivery(f: MessageFilter) -> bool:
    """True when ``f`` selects messages by one of their deliveries."""
    return bool(f.service or f.state or f.ever_state or f.min_attempts)


def _delivered(f: MessageFilter, scan: bool) -> ColumnElement[bool]:
    wanted = []
    if f.service:
        wanted.append(deliveries.c.service == f.service)
    if f.state:
        wanted.append(deliveries.c.state == f.state)
    if f.ever_state:  # each state's latest time is kept: set once the state was reached
        wanted.append(deliveries.c[STATE_COLUMNS[f.ever_state]].is_not(None))
    if f.min_attempts:
        wanted.append(deliveries.c.attempts >= f.min_attempts)
        if f.min_attempts > 1:  # the predicate of ix_deliveries_retried, spelt as SQLite needs
            wanted.append(deliveries.c.attempts > 1)
    if scan:  # a primary-key probe per scanned message
        return exists().where(deliveries.c.message_id == messages.c.id, *wanted)
    return messages.c.id.in_(select(deliveries.c.message_id).where(*wanted))


def in_delivery_time(f: MessageFilter) -> bool:
    """True for a service and a state with no other filter but a time range.

    Such a page comes in order from ``ix_deliveries_service_state_time``
    (deliveries hold their message's ``created_at``), whatever the pair's
    share of the messages; any other filter keeps the general plan.
    """
    others = f.topic or f.kind or f.sender or f.correlation_id or (f.text and f.text.split())
    return bool(f.service and f.state) and not (others or f.ever_state or f.min_attempts)


def scan_first(f: MessageFilter, dialect: str) -> bool:
    """True when walking the newest messages is worth trying before the filters' indexes.

    Not when an index already yields the page in order (exact topic, kind,
    full sender, correlation id: each indexed with the time), nor for text
    search (testing each row's document costs more than listing the matches).
    Nor, on PostgreSQL, for delivery filters alone (service, state, ever-state,
    attempts): its planner already chooses, from the deliveries' statistics, between walking
    the newest messages and going through ``ix_deliveries_*``, and that plain
    query is what runs anyway when a window falls short.
    """
    if not (f.topic or f.sender or _by_delivery(f)):
        return False
    if dialect == "postgresql" and not (f.topic or f.sender):
        return False
    ordered = (
        (f.topic and "*" not in f.topic and "#" not in f.topic)
        or f.kind
        or (f.sender and "/" in f.sender)
        or f.correlation_id
        or (f.text and f.text.split())
    )
    return not ordered


def conditions(
    dialect: str, f: MessageFilter, *, scan: bool = False, text_floor: int | None = None
) -> list[ColumnElement[bool]]:
    """The WHERE conditions of ``f`` on the ``messages`` table.

    ``scan=True`` writes them so that no index but the time index applies: for
    walking the newest messages backwards and testing each, which is the fast
    plan when many messages match. ``text_floor`` bounds the SQLite full-text
    match to rowids from that value on (see ``_text``).
    """
    out: list[ColumnElement[bool]] = []
    if f.topic:
        out.append(_topic(f.topic, scan))
    if f.system is False or (f.system is None and not f.topic):
        out.append(not_(_prefix_range(messages.c.topic, "sys.")))
    if f.kind:
        out.append(_bare(messages.c.kind, scan) == f.kind)
    if f.sender:
        out.append(_sender(f.sender, scan))
    if _by_delivery(f):
        out.append(_delivered(f, scan))
    if f.since:
        out.append(messages.c.created_at >= f.since)
    if f.until:
        out.append(messages.c.created_at < f.until)
    if f.correlation_id:
        out.append(_bare(messages.c.correlation_id, scan) == f.correlation_id)
    if f.text and f.text.split():
        out.append(_text(dialect, f.text, text_floor))
    return out


def encode_cursor(created_at: datetime, message_id: str) -> str:
    raw = f"{created_at.isoformat()}|{message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, message_id = raw.split("|", 1)
        return datetime.fromisoformat(when), message_id
    except (ValueError, UnicodeDecodeError):
        raise BadCursor(
            f"bad cursor {cursor!r}: pass the value printed as 'next' by the previous page"
        ) from None


def before_cursor(
    cursor: str,
    created_at: ColumnElement[Any] = messages.c.created_at,
    message_id: ColumnElement[Any] = messages.c.id,
) -> ColumnElement[bool]:
    """Rows strictly older than the cursor in (created_at, id) descending order.

    The columns default to the message's; deliveries page by their copy of them.
    """
    when, mid = decode_cursor(cursor)
    return tuple_(created_at, message_id) < tuple_(literal(when, created_at.type), literal(mid))
