"""The parts' tables (ha, integrity, watchdog, service claims) under the store's history.

Until now each part created its tables itself when first used, outside these
migrations. A store those parts already used has some or all of them: only
the missing tables and indexes are created, and rows are kept. The
runtime's older record of processed ids, ``service_processed``, becomes done
claims in ``service_claims`` (claimed and done at the time it was
processed), then is dropped.

The tables are written out here as they were at this revision, not imported
from the parts: a later change to a part's table is a later revision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COPY_PROCESSED = {
    "sqlite": (
        "INSERT OR IGNORE INTO service_claims "
        "(service, message_id, claimer, claimed_until, done_at) "
        "SELECT service, message_id, 'service_processed', t, t FROM ("
        "SELECT service, message_id, (julianday(processed_at) - 2440587.5) * 86400.0 AS t "
        "FROM service_processed)"
    ),
    "postgresql": (
        "INSERT INTO service_claims (service, message_id, claimer, claimed_until, done_at) "
        "SELECT service, message_id, 'service_processed', t, t FROM ("
        "SELECT service, message_id, extract(epoch FROM processed_at)::float8 AS t "
        "FROM service_processed) AS old ON CONFLICT DO NOTHING"
    ),
}


def _ha(metadata: sa.MetaData) -> None:
    sa.Table(
        "ha_leases",
        metadata,
        sa.Column("role", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=True),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("acquired_at", sa.Double, nullable=False),
        sa.Column("renewed_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("stepdown_requested", sa.Boolean, nullable=False),
    )
    sa.Table(
        "ha_members",
        metadata,
        sa.Column("role", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(255), primary_key=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("ttl", sa.Double, nullable=False),
        sa.Column("seen_at", sa.Double, nullable=False),
    )
    sa.Table(
        "ha_checkpoints",
        metadata,
        sa.Column("role", sa.String(200), primary_key=True),
        sa.Column("version", sa.BigInteger, primary_key=True),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("state", sa.JSON, nullable=True),
    )
    sa.Table(
        "ha_monitors",
        metadata,
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("active_url", sa.Text, nullable=False),
        sa.Column("urls", sa.JSON, nullable=False),
        sa.Column("since", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    sa.Table(
        "ha_monitor_transitions",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("monitor", sa.String(100), nullable=False, index=True),
        sa.Column("from_state", sa.String(20), nullable=False),
        sa.Column("to_state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )


def _integrity(metadata: sa.MetaData) -> None:
    when = sa.DateTime(timezone=True)
    sa.Table(
        "integrity_files",
        metadata,
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("algorithm", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("block_size", sa.Integer, nullable=False),
        sa.Column("blocks", sa.Integer, nullable=False),
        sa.Column("data_blocks", sa.Integer, nullable=True),
        sa.Column("parity_blocks", sa.Integer, nullable=True),
        sa.Column("manifest_checksum", sa.String(100), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("updated_at", when, nullable=False),
    )
    sa.Table(
        "integrity_replicas",
        metadata,
        sa.Column("name", sa.String(512), sa.ForeignKey("integrity_files.name"), primary_key=True),
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(128), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("verified_at", when, nullable=True),
        sa.Column("updated_at", when, nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Index("ix_integrity_replicas_site_state", "site", "state"),
    )
    sa.Table(
        "integrity_transfers",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(512), nullable=True),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("src", sa.Text, nullable=False),
        sa.Column("dst", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        *(
            sa.Column(name, kind, nullable=False)
            for name, kind in (
                ("size", sa.BigInteger),
                ("bytes_moved", sa.BigInteger),
                ("bytes_refetched", sa.BigInteger),
                ("bytes_retransmitted", sa.BigInteger),
                ("blocks_repaired", sa.Integer),
                ("blocks_refetched", sa.Integer),
                ("attempts", sa.Integer),
                ("seconds", sa.Float),
            )
        ),
        sa.Column("finished_at", when, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Index("ix_integrity_transfers_finished", "finished_at"),
    )
    sa.Table(
        "integrity_repairs",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(512), nullable=True),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("blocks", sa.Text, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("source", sa.Text, nullable=True),
        sa.Column("at", when, nullable=False),
    )
    sa.Table(
        "integrity_scrubs",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", when, nullable=False),
        sa.Column("finished_at", when, nullable=True),
        sa.Column("cursor", sa.String(512), nullable=True),
        *(
            sa.Column(name, sa.Integer, nullable=False)
            for name in ("checked", "ok", "corrupt", "repaired", "missing", "dark")
        ),
        sa.Column("bytes_read", sa.BigInteger, nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Index("ix_integrity_scrubs_site", "site", "state"),
    )


def _watchdog_and_service(metadata: sa.MetaData) -> None:
    when = sa.DateTime(timezone=True)
    sa.Table(
        "watchdog_programs",
        metadata,
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("watchdog", sa.String(100), primary_key=True),
        sa.Column("program", sa.String(100), primary_key=True),
        sa.Column("instance", sa.Integer, primary_key=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("pid", sa.Integer),
        sa.Column("restarts", sa.Integer, nullable=False),
        sa.Column("last_event", sa.String(32)),
        sa.Column("last_reason", sa.Text),
        sa.Column("started_at", when),
        sa.Column("updated_at", when, nullable=False),
        sa.Column("rss", sa.Integer),
        sa.Column("cpu", sa.Float),
        sa.Column("history", sa.Text),
    )
    sa.Table(
        "service_claims",
        metadata,
        sa.Column("service", sa.String(200), primary_key=True),
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("claimer", sa.String(255), nullable=False),
        sa.Column("claimed_until", sa.Double, nullable=False),
        sa.Column("done_at", sa.Double, nullable=True, index=True),
    )


def upgrade() -> None:
    bind = op.get_bind()
    metadata = sa.MetaData()
    for declare in (_ha, _integrity, _watchdog_and_service):
        declare(metadata)
    metadata.create_all(bind, checkfirst=True)
    for table in metadata.sorted_tables:  # a table that existed may lack an index
        for index in table.indexes:
            index.create(bind, checkfirst=True)
    if sa.inspect(bind).has_table("service_processed"):
        op.execute(_COPY_PROCESSED[bind.dialect.name])
        op.drop_table("service_processed")


def downgrade() -> None:
    """Leave the tables and their rows: the releases before 0005 create and use
    them themselves (``service_processed`` is not restored)."""
