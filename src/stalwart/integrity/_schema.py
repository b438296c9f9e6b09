"""The catalog's tables (SQLAlchemy Core), kept apart from the queries; created by the
store's migrations. Their history is pruned after :data:`HISTORY`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

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
    delete,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stalwart.envelope import utcnow
from stalwart.store.schema import register

if TYPE_CHECKING:
    from stalwart.config import StoreSettings

__all__ = [
    "HISTORY",
    "files",
    "metadata",
    "prune",
    "prune_history",
    "repairs",
    "replicas",
    "scrubs",
    "transfers",
]

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
    # ok | corrupt | repaired | missing | unverified | retiring
    Column("state", String(16), nullable=False),
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

# How long `stalwart store prune` keeps transfer, repair and finished scrub records.
HISTORY: Final = timedelta(days=90)


async def prune_history(conn: AsyncConnection, before: datetime) -> dict[str, int]:
    """Delete transfer and repair records, and finished scrub runs, from before
    ``before``; each site's latest run and latest finished run stay. Rows deleted
    per table."""
    latest = select(func.max(scrubs.c.id)).group_by(scrubs.c.site)
    latest_done = latest.where(scrubs.c.state == "done")
    statements = {
        "integrity_transfers": delete(transfers).where(transfers.c.finished_at < before),
        "integrity_repairs": delete(repairs).where(repairs.c.at < before),
        "integrity_scrubs": delete(scrubs).where(
            scrubs.c.state == "done",
            scrubs.c.finished_at < before,
            scrubs.c.id.not_in(latest),
            scrubs.c.id.not_in(latest_done),
        ),
    }
    return {name: (await conn.execute(s)).rowcount for name, s in statements.items()}


async def prune(engine: AsyncEngine, settings: StoreSettings) -> dict[str, int]:
    """The history older than :data:`HISTORY` (``stalwart store prune``)."""
    async with engine.begin() as conn:
        return await prune_history(conn, utcnow() - HISTORY)


register("integrity", metadata, prune=prune)
