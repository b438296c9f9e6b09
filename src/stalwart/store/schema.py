"""The store's tables, in SQLAlchemy Core, and the registry of every part's tables.

Core tables carry no prefix and live on :data:`metadata`. The parts that keep
tables in the store's database (``ha_*``, ``integrity_*``, ``watchdog_*``,
``service_*``) define them next to the code that reads them, on their own
``MetaData``, and :func:`register` it when imported: parts import the store,
never the reverse. The store's migrations create every one of them; the
registry is what Alembic compares them with. Every index exists for a query in
:mod:`stalwart.store.queries` (named in the comment next to it). Full-text
search is dialect specific and created by the migrations: an FTS5 table
``messages_fts`` over ``messages.search`` on SQLite, a generated ``tsvector``
column with a GIN index on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from stalwart.config import StoreSettings

__all__ = [
    "STATE_COLUMNS",
    "Pruner",
    "UtcDateTime",
    "components",
    "deliveries",
    "delivery_state_counts",
    "messages",
    "metadata",
    "pruners",
    "register",
    "registered",
    "reports",
    "traffic_edge_minutes",
    "traffic_topic_minutes",
    "transitions",
]


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect.

    PostgreSQL keeps ``timestamptz``; SQLite stores naive UTC text, which sorts
    and compares correctly as long as every value is UTC, which this enforces.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_Json = JSON().with_variant(JSONB(), "postgresql")
# Byte order ("C") on PostgreSQL so that a prefix is a contiguous index range
# (topic patterns, sender prefixes), as it is on SQLite.
_Prefixed = String(255).with_variant(String(255, collation="C"), "postgresql")
_Id = String(64)
_Ref = String(255)  # correlation/causation ids: usually message ids, but free text

metadata = MetaData()

messages = Table(
    "messages",
    metadata,
    Column("id", _Id, primary_key=True),
    Column("topic", _Prefixed, nullable=False),
    Column("kind", String(200), nullable=False),
    Column("sender", _Prefixed, nullable=False),
    Column("sender_service", String(255), nullable=False),
    Column("correlation_id", _Ref),
    Column("causation_id", _Ref),
    Column("reply_to", String(255)),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime()),
    Column("stored_at", UtcDateTime(), nullable=False),
    Column("headers", _Json, nullable=False),
    Column("body", _Json),
    Column("size", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("signed", Boolean, nullable=False),
    Column("search", Text, nullable=False),
    # list_messages default order, since/until, keyset cursor, traffic windows, prune.
    Index("ix_messages_created", "created_at", "id"),
    # --topic: the pattern's literal prefix is an index range on topic.
    Index("ix_messages_topic", "topic", "created_at", "id"),
    Index("ix_messages_kind", "kind", "created_at", "id"),
    # --sender (exact or service@site prefix).
    Index("ix_messages_sender", "sender", "created_at", "id"),
    # --correlation.
    Index("ix_messages_correlation", "correlation_id", "created_at"),
    # get_message: the causal chain down (children of a message).
    Index("ix_messages_causation", "causation_id"),
)

STATE_COLUMNS: Final = {
    "sent": "sent_at",
    "received": "received_at",
    "failed": "failed_at",
    "consumed": "consumed_at",
    "dead": "dead_at",
    "expired": "expired_at",
    "rejected": "rejected_at",
}

deliveries = Table(
    "deliveries",
    metadata,
    Column("message_id", _Id, nullable=False),
    Column("service", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("state_rank", SmallInteger, nullable=False),
    Column("last_at", UtcDateTime(), nullable=False),
    Column("attempts", Integer, nullable=False),
    *(Column(col, UtcDateTime()) for col in STATE_COLUMNS.values()),
    Column("reason", Text),
    Column("instance", String(255)),
    Column("topic", _Prefixed),
    # The message's created_at, from the transitions (NULL when they lacked it).
    Column("message_created_at", UtcDateTime()),
    PrimaryKeyConstraint("message_id", "service", name="pk_deliveries"),
    # --service/--state filters; --service with --state pages in message time.
    Index(
        "ix_deliveries_service_state_time", "service", "state", "message_created_at", "message_id"
    ),
    Index("ix_deliveries_state", "state", "message_id"),
    # Traffic and flows: the deliveries of a time window (stats.delivered_since).
    Index("ix_deliveries_message_time", "message_created_at"),
    # --ever-state failed and --min-attempts N (N > 1): partial, so only the
    # deliveries that ever failed or were retried pay for them on write.
    Index(
        "ix_deliveries_failed",
        "service",
        "message_id",
        sqlite_where=text("failed_at IS NOT NULL"),
        postgresql_where=text("failed_at IS NOT NULL"),
    ),
    Index(
        "ix_deliveries_retried",
        "service",
        "message_id",
        sqlite_where=text("attempts > 1"),
        postgresql_where=text("attempts > 1"),
    ),
)

# Deliveries per service and state for counts_by_state, kept by triggers on
# deliveries (migration 0002) so that reading them never scans deliveries.
delivery_state_counts = Table(
    "delivery_state_counts",
    metadata,
    Column("service", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("n", BigInteger, nullable=False),
    PrimaryKeyConstraint("service", "state", name="pk_delivery_state_counts"),
)

# Traffic per minute (since the epoch, of messages.created_at) for stats.traffic:
# messages per topic, and (message, delivery) pairs per sender_service ->
# service edge; kept by triggers on messages and deliveries (migration 0007).
traffic_topic_minutes = Table(
    "traffic_topic_minutes",
    metadata,
    Column("minute", BigInteger, nullable=False),
    Column("topic", String(255), nullable=False),
    Column("n", BigInteger, nullable=False),
    PrimaryKeyConstraint("minute", "topic", name="pk_traffic_topic_minutes"),
)

traffic_edge_minutes = Table(
    "traffic_edge_minutes",
    metadata,
    Column("minute", BigInteger, nullable=False),
    Column("sender_service", String(255), nullable=False),
    Column("service", String(255), nullable=False),
    Column("n", BigInteger, nullable=False),
    PrimaryKeyConstraint("minute", "sender_service", "service", name="pk_traffic_edge_minutes"),
)

transitions = Table(
    "transitions",
    metadata,
    Column("message_id", _Id, nullable=False),
    Column("service", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("reason", Text),
    Column("instance", String(255)),
    # Append-only; a duplicate transition hits this key and changes nothing.
    # Its message_id prefix serves the per-message timeline.
    PrimaryKeyConstraint("message_id", "service", "state", "attempt", "at", name="pk_transitions"),
)

reports = Table(
    "reports",
    metadata,
    Column("id", _Id, primary_key=True),  # the envelope id: redelivery is a no-op
    Column("level", String(16), nullable=False),
    Column("level_rank", SmallInteger, nullable=False),
    Column("source", String(255), nullable=False),
    Column("text", Text, nullable=False),
    Column("refs", _Json, nullable=False),
    Column("host", String(255)),
    Column("at", UtcDateTime(), nullable=False),
    # list_reports: newest first, optionally by minimum level or by source.
    Index("ix_reports_at", "at"),
    Index("ix_reports_level", "level_rank", "at"),
    Index("ix_reports_source", "source", "at"),
)

components = Table(
    "components",
    metadata,
    Column("service", String(255), nullable=False),
    Column("instance", String(255), nullable=False),
    Column("site", String(255), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", BigInteger, nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("last_heartbeat", UtcDateTime(), nullable=False),
    Column("interval", Float, nullable=False),
    Column("uptime", Float, nullable=False),
    Column("inflight", Integer, nullable=False),
    Column("processed", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("progress", BigInteger),
    Column("patterns", _Json, nullable=False),
    Column("stopping", Boolean, nullable=False),
    PrimaryKeyConstraint("service", "instance", name="pk_components"),
)


Pruner = Callable[["AsyncEngine", "StoreSettings"], Awaitable[dict[str, int]]]
"""Deletes a part's rows past their retention; returns how many per table."""

_parts: dict[str, MetaData] = {"store": metadata}
_pruners: dict[str, Pruner] = {}


def register(part: str, tables: MetaData, *, prune: Pruner | None = None) -> None:
    """Declare ``part``'s tables as kept under the store's migrations, and (with
    ``prune``) pruned by ``stalwart store prune``.

    A part's table module calls this when imported. Registering the same
    ``MetaData`` again is harmless; another one under a taken name is a bug.
    """
    known = _parts.setdefault(part, tables)
    if known is not tables:
        raise ValueError(f"the part {part!r} already registered other tables")
    if prune is not None:
        _pruners[part] = prune


def registered() -> dict[str, MetaData]:
    """Every registered part's ``MetaData`` by part name (the store's as ``store``)."""
    return dict(_parts)


def pruners() -> dict[str, Pruner]:
    """Every registered part's pruner by part name."""
    return dict(_pruners)
