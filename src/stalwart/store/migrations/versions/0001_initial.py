"""Initial store: messages, deliveries, transitions, reports, components, full-text search.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from stalwart.store.schema import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_TOPIC = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")
_STATES = ("sent", "received", "failed", "consumed", "dead", "expired", "rejected")


def _ts(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, UtcDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("topic", _TOPIC, nullable=False),
        sa.Column("kind", sa.String(200), nullable=False),
        sa.Column("sender", _TOPIC, nullable=False),
        sa.Column("sender_service", sa.String(255), nullable=False),
        sa.Column("correlation_id", sa.String(255)),
        sa.Column("causation_id", sa.String(255)),
        sa.Column("reply_to", sa.String(255)),
        _ts("created_at", False),
        _ts("expires_at"),
        _ts("stored_at", False),
        sa.Column("headers", _JSON, nullable=False),
        sa.Column("body", _JSON),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("signed", sa.Boolean, nullable=False),
        sa.Column("search", sa.Text, nullable=False),
    )
    op.create_index("ix_messages_created", "messages", ["created_at", "id"])
    op.create_index("ix_messages_topic", "messages", ["topic", "created_at", "id"])
    op.create_index("ix_messages_kind", "messages", ["kind", "created_at", "id"])
    op.create_index("ix_messages_sender", "messages", ["sender", "created_at", "id"])
    op.create_index("ix_messages_correlation", "messages", ["correlation_id", "created_at"])
    op.create_index("ix_messages_causation", "messages", ["causation_id"])

    op.create_table(
        "deliveries",
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_rank", sa.SmallInteger, nullable=False),
        _ts("last_at", False),
        sa.Column("attempts", sa.Integer, nullable=False),
        *(_ts(f"{state}_at") for state in _STATES),
        sa.Column("reason", sa.Text),
        sa.Column("instance", sa.String(255)),
        sa.Column("topic", _TOPIC),
        sa.PrimaryKeyConstraint("message_id", "service", name="pk_deliveries"),
    )
    op.create_index("ix_deliveries_service_state", "deliveries", ["service", "state", "message_id"])
    op.create_index("ix_deliveries_state", "deliveries", ["state", "message_id"])

    op.create_table(
        "transitions",
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        _ts("at", False),
        sa.Column("reason", sa.Text),
        sa.Column("instance", sa.String(255)),
        sa.PrimaryKeyConstraint(
            "message_id", "service", "state", "attempt", "at", name="pk_transitions"
        ),
    )

    op.create_table(
        "reports",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("level_rank", sa.SmallInteger, nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("refs", _JSON, nullable=False),
        sa.Column("host", sa.String(255)),
        _ts("at", False),
    )
    op.create_index("ix_reports_at", "reports", ["at"])
    op.create_index("ix_reports_level", "reports", ["level_rank", "at"])
    op.create_index("ix_reports_source", "reports", ["source", "at"])

    op.create_table(
        "components",
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("instance", sa.String(255), nullable=False),
        sa.Column("site", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.BigInteger, nullable=False),
        _ts("started_at", False),
        _ts("last_heartbeat", False),
        sa.Column("interval", sa.Float, nullable=False),
        sa.Column("uptime", sa.Float, nullable=False),
        sa.Column("inflight", sa.Integer, nullable=False),
        sa.Column("processed", sa.BigInteger, nullable=False),
        sa.Column("failed", sa.BigInteger, nullable=False),
        sa.Column("progress", sa.BigInteger),
        sa.Column("patterns", _JSON, nullable=False),
        sa.Column("stopping", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("service", "instance", name="pk_components"),
    )
    _create_search()


def _create_search() -> None:
    """Full-text search: FTS5 over messages.search (SQLite) or a tsvector (PostgreSQL)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE messages ADD COLUMN search_tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector('simple', search)) STORED"
        )
        op.execute("CREATE INDEX ix_messages_search ON messages USING gin (search_tsv)")
        return
    op.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        "search, content='messages', content_rowid='rowid')"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, search) VALUES (new.rowid, new.search); END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, search) "
        "VALUES ('delete', old.rowid, old.search); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS messages_fts_delete")
        op.execute("DROP TRIGGER IF EXISTS messages_fts_insert")
        op.execute("DROP TABLE IF EXISTS messages_fts")
    for table in ("components", "reports", "transitions", "deliveries", "messages"):
        op.drop_table(table)
