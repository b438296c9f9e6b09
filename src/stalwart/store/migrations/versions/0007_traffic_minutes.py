"""Traffic counted per minute, kept by triggers on ``messages`` and ``deliveries``.

The overview's traffic over 6 h or 24 h grouped every message of the window
and joined their deliveries (321 ms at p50 for a day on a store of a
million). Two tables now hold, per minute since the epoch of the message's
``created_at``, the messages of each topic and the (message, delivery)
pairs of each ``sender_service -> service`` edge; ``stats.traffic`` sums
them for buckets of whole minutes. As for ``delivery_state_counts`` (0002),
triggers keep them in the same transaction as any write: SQLite row
triggers, PostgreSQL statement triggers over transition tables (a grouped
upsert per table and statement, in key order). Only rows really inserted count, so a
message or delivery written again (``ON CONFLICT``) changes nothing.

A delivery may be stored before or after its message: a pair is counted by
whichever of the two inserts comes second, as it joins the other table.
Deletes are counted by triggers too, the same way round (whichever of the
two goes first), rather than by retention pruning minutes: retention keeps
messages stored after it started (whatever their time) and deletes orphan
deliveries by their own age, and a manual delete must keep the counts right
too. A minute row whose count falls to zero is deleted with it, so the
tables hold only minutes that still have messages.

On PostgreSQL two writers could each insert one side of a pair without
seeing the other's uncommitted row, and neither would count it. The
triggers take one transaction-scoped advisory lock, so that each sees every
write committed before it: after the statement on ``messages`` (writers
still copy their messages in parallel), before the statement on
``deliveries`` (so before 0002's triggers lock their count rows, the order
every writer takes them in). Concurrent writers queue on the current
minute's count rows anyway; the lock adds little to that.

``messages.created_at``, ``topic`` and ``sender_service`` and a delivery's
key never change (messages are written once), so updates need no trigger.
The migration creates the triggers, then fills the tables from the rows
already stored; creating the triggers makes writers wait until it commits
(a GROUP BY over every message and its deliveries).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import zlib

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TOPICS = "traffic_topic_minutes"
_EDGES = "traffic_edge_minutes"
_LOCK = zlib.crc32(b"stalwart.store.traffic_minutes") & 0x7FFFFFFF


def _minute(dialect: str, column: str) -> str:
    """Minutes since the epoch of the time in ``column``."""
    if dialect == "postgresql":
        return f"floor(extract(epoch FROM {column}) / 60)::bigint"
    return f"CAST(strftime('%s', {column}) AS INTEGER) / 60"


def _sqlite_triggers() -> dict[str, str]:
    """Row triggers; each pair's edge row is found through the other table."""
    new, old = _minute("sqlite", "new.created_at"), _minute("sqlite", "old.created_at")
    pair_of_old_delivery = (
        f"SELECT {_minute('sqlite', 'created_at')}, sender_service, old.service "
        "FROM messages WHERE id = old.message_id"
    )
    return {
        "messages_traffic_insert": (
            "AFTER INSERT ON messages BEGIN "
            f"INSERT INTO {_TOPICS} (minute, topic, n) VALUES ({new}, new.topic, 1) "
            "ON CONFLICT (minute, topic) DO UPDATE SET n = n + 1; "
            f"INSERT INTO {_EDGES} (minute, sender_service, service, n) "
            f"SELECT {new}, new.sender_service, service, 1 FROM deliveries "
            "WHERE message_id = new.id "
            "ON CONFLICT (minute, sender_service, service) DO UPDATE SET n = n + 1; END"
        ),
        "messages_traffic_delete": (
            "AFTER DELETE ON messages BEGIN "
            f"UPDATE {_TOPICS} SET n = n - 1 WHERE minute = {old} AND topic = old.topic; "
            f"UPDATE {_EDGES} SET n = n - 1 WHERE minute = {old} "
            "AND sender_service = old.sender_service "
            "AND service IN (SELECT service FROM deliveries WHERE message_id = old.id); "
            f"DELETE FROM {_TOPICS} WHERE minute = {old} AND n = 0; "
            f"DELETE FROM {_EDGES} WHERE minute = {old} AND n = 0; END"
        ),
        "deliveries_traffic_insert": (
            "AFTER INSERT ON deliveries BEGIN "
            f"INSERT INTO {_EDGES} (minute, sender_service, service, n) "
            f"SELECT {_minute('sqlite', 'created_at')}, sender_service, new.service, 1 "
            "FROM messages WHERE id = new.message_id "
            "ON CONFLICT (minute, sender_service, service) DO UPDATE SET n = n + 1; END"
        ),
        "deliveries_traffic_delete": (
            "AFTER DELETE ON deliveries BEGIN "
            f"UPDATE {_EDGES} SET n = n - 1 "
            f"WHERE (minute, sender_service, service) IN ({pair_of_old_delivery}); "
            f"DELETE FROM {_EDGES} WHERE n = 0 "
            f"AND (minute, sender_service, service) IN ({pair_of_old_delivery}); END"
        ),
    }


_PG_MINUTE = _minute("postgresql", "m.created_at")


def _pg_topics(delta: int, rows: str) -> str:
    """Upsert of each minute and topic of the messages ``rows`` (alias ``m``) by ``delta``."""
    return (
        f"INSERT INTO {_TOPICS} AS c (minute, topic, n) "
        f"SELECT {_PG_MINUTE}, m.topic, {delta} * count(*) FROM {rows} "
        "GROUP BY 1, 2 ORDER BY 1, 2 "
        "ON CONFLICT (minute, topic) DO UPDATE SET n = c.n + excluded.n"
    )


def _pg_edges(delta: int, pairs: str) -> str:
    """Upsert of each minute and edge of the (message ``m``, delivery ``d``) ``pairs``."""
    return (
        f"INSERT INTO {_EDGES} AS c (minute, sender_service, service, n) "
        f"SELECT {_PG_MINUTE}, m.sender_service, d.service, {delta} * count(*) FROM {pairs} "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
        "ON CONFLICT (minute, sender_service, service) DO UPDATE SET n = c.n + excluded.n"
    )


def _pg_less(table: str, upsert: str) -> str:
    """``upsert`` (of minus counts), then delete the rows of ``table`` it left at zero."""
    return (
        f"WITH up AS ({upsert} RETURNING minute, n) "
        "SELECT min(minute), max(minute) INTO lo, hi FROM up WHERE n = 0; "
        f"DELETE FROM {table} WHERE n = 0 AND minute BETWEEN lo AND hi; "
    )


_PG_LOCK = f"PERFORM pg_advisory_xact_lock({_LOCK}); "
_NEW_MESSAGES = "new_rows m JOIN deliveries d ON d.message_id = m.id"
_OLD_MESSAGES = "old_rows m JOIN deliveries d ON d.message_id = m.id"
_NEW_DELIVERIES = "new_rows d JOIN messages m ON m.id = d.message_id"
_OLD_DELIVERIES = "old_rows d JOIN messages m ON m.id = d.message_id"

# PostgreSQL: statement trigger bodies, one grouped upsert per table in key order.
_PG_FUNCTIONS = {
    "messages_traffic_insert": (
        f"{_PG_LOCK}{_pg_topics(1, 'new_rows m')}; {_pg_edges(1, _NEW_MESSAGES)}; "
    ),
    "messages_traffic_delete": _PG_LOCK
    + _pg_less(_TOPICS, _pg_topics(-1, "old_rows m"))
    + _pg_less(_EDGES, _pg_edges(-1, _OLD_MESSAGES)),
    "deliveries_traffic_insert": f"{_pg_edges(1, _NEW_DELIVERIES)}; ",
    "deliveries_traffic_delete": _pg_less(_EDGES, _pg_edges(-1, _OLD_DELIVERIES)),
}

# A statement's rows are a batch (a few thousand at most), the other table
# millions: its primary key is probed for each row. Left to itself the planner
# hashes the whole other table from about 2,000 rows on (50 ms a batch on
# 200,000 messages, growing with the store).
_PG_PROBE = "SET enable_hashjoin = off SET enable_mergejoin = off"


def _create_pg_triggers() -> None:
    for name, body in _PG_FUNCTIONS.items():
        table, _, event = name.split("_")
        rows = "NEW TABLE AS new_rows" if event == "insert" else "OLD TABLE AS old_rows"
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql {_PG_PROBE} AS "
            f"$$ DECLARE lo bigint; hi bigint; BEGIN {body}RETURN NULL; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event.upper()} ON {table} "
            f"REFERENCING {rows} FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
        )
    op.execute(
        "CREATE FUNCTION deliveries_traffic_lock() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN {_PG_LOCK}RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER deliveries_traffic_lock BEFORE INSERT OR DELETE ON deliveries "
        "FOR EACH STATEMENT EXECUTE FUNCTION deliveries_traffic_lock()"
    )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        _TOPICS,
        sa.Column("minute", sa.BigInteger, nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("minute", "topic", name=f"pk_{_TOPICS}"),
    )
    op.create_table(
        _EDGES,
        sa.Column("minute", sa.BigInteger, nullable=False),
        sa.Column("sender_service", sa.String(255), nullable=False),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("minute", "sender_service", "service", name=f"pk_{_EDGES}"),
    )
    # Triggers first: creating them waits for the writers in progress and holds
    # off the others, so the backfill sees every row written before them.
    if dialect == "postgresql":
        _create_pg_triggers()
    else:
        for name, body in _sqlite_triggers().items():
            op.execute(f"CREATE TRIGGER {name} {body}")
    minute_of = _minute(dialect, "m.created_at")
    op.execute(
        f"INSERT INTO {_TOPICS} (minute, topic, n) "
        f"SELECT {minute_of}, m.topic, count(*) FROM messages m GROUP BY 1, 2"
    )
    op.execute(
        f"INSERT INTO {_EDGES} (minute, sender_service, service, n) "
        f"SELECT {minute_of}, m.sender_service, d.service, count(*) "
        "FROM messages m JOIN deliveries d ON d.message_id = m.id GROUP BY 1, 2, 3"
    )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in [*_PG_FUNCTIONS, *(["deliveries_traffic_lock"] if postgres else [])]:
        table = name.split("_")[0]
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table(_EDGES)
    op.drop_table(_TOPICS)
