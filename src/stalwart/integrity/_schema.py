"""The catalog's tables (SQLAlchemy Core), kept apart from the queries; created by the
store's migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from stalwart.store.schema import register

__all__ = ["files", "metadata", "repairs", "replicas", "scrubs", "transfers"]

metadata = MetaData()

files = Table(
    "integrity_files",
    metadata,
    Column("name", String(512), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("algorithm", String(32), nullable=False),
    Column("digest", String(128), nullable=False),
    Column("block_size", Integer, nullable=False),
    Column("blocks", Integer, nullable=False),
    Column("data_blocks", Integer, nullable=True),
    Column("parity_blocks", Integer, nullable=True),
    Column("manifest_checksum", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

replicas = Table(
    "integrity_replicas",
    metadata,
    Column("name", String(512), ForeignKey("integrity_files.name"), primary_key=True),
    Column("site", String(64), primary_key=True),
    Column("path", Text, nullable=False),
    Column("state", String(16), nullable=False),  # ok | corrupt | repaired | missing | unverified
    Column("digest", String(128), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("verified_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("detail", Text, nullable=True),
    Index("ix_integrity_replicas_site_state", "site", "state"),
)

transfers = Table(
    "integrity_transfers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(512), nullable=True),
    Column("site", String(64), nullable=True),
    Column("src", Text, nullable=False),
    Column("dst", Text, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("size", BigInteger, nullable=False, default=0),
    Column("bytes_moved", BigInteger, nullable=False, default=0),
    Column("bytes_refetched", BigInteger, nullable=False, default=0),
    Column("bytes_retransmitted", BigInteger, nullable=False, default=0),
    Column("blocks_repaired", Integer, nullable=False, default=0),
    Column("blocks_refetched", Integer, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=1),
    Column("seconds", Float, nullable=False, default=0.0),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("error", Text, nullable=True),
    Index("ix_integrity_transfers_finished", "finished_at"),
)

repairs = Table(
    "integrity_repairs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(512), nullable=True),
    Column("site", String(64), nullable=True),
    Column("path", Text, nullable=False),
    Column(
        "method", String(32), nullable=False
    ),  # parity | refetch | replica | truncate | parity-rebuild
    Column("blocks", Text, nullable=False),  # JSON list of block indices
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("source", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

scrubs = Table(
    "integrity_scrubs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # running | done | interrupted
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("cursor", String(512), nullable=True),  # last replica name finished
    Column("checked", Integer, nullable=False, default=0),
    Column("ok", Integer, nullable=False, default=0),
    Column("corrupt", Integer, nullable=False, default=0),
    Column("repaired", Integer, nullable=False, default=0),
    Column("missing", Integer, nullable=False, default=0),
    Column("dark", Integer, nullable=False, default=0),
    Column("bytes_read", BigInteger, nullable=False, default=0),
    Column("detail", Text, nullable=True),
    Index("ix_integrity_scrubs_site", "site", "state"),
)

register("integrity", metadata)
