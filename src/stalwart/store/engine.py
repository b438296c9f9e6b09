"""Database engines from the user's store URL.

Users write ``sqlite:///path/store.db`` or ``postgresql://user@host/db``; this
picks the async driver (aiosqlite, asyncpg) and sets SQLite up for many
processes on one host (WAL, a busy timeout, foreign keys).
"""

from __future__ import annotations

import zlib
from typing import Any

from sqlalchemy import Double, MetaData, Table, cast, event, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql.elements import ColumnElement

from stalwart.errors import ConfigError

__all__ = ["async_url", "create_missing", "db_now", "make_engine", "upsert"]


def async_url(url: str) -> str:
    """Map a plain database URL to its async-driver form."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ConfigError(
        f"unsupported store URL {parsed.render_as_string()!r}: use sqlite:///path or postgresql://"
    )


def make_engine(url: str, **options: Any) -> AsyncEngine:
    """An async engine for ``url``; SQLite files get WAL and a 30 s busy timeout."""
    engine = create_async_engine(async_url(url), **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def create_missing(conn: AsyncConnection, metadata: MetaData) -> None:
    """Create ``metadata``'s tables and indexes that do not exist yet.

    For the parts that keep their own tables (watchdog, ha, integrity, the
    runtime's idempotency record). Safe when many processes start at once:
    every statement is ``IF NOT EXISTS``, and on PostgreSQL, where two such
    statements can still collide in the catalog, a transaction-scoped advisory
    lock serialises them.
    """
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(",".join(sorted(metadata.tables)).encode()) & 0x7FFFFFFF
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    for table in metadata.sorted_tables:
        await conn.execute(CreateTable(table, if_not_exists=True))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            await conn.execute(CreateIndex(index, if_not_exists=True))


def db_now(conn: AsyncConnection | AsyncEngine) -> ColumnElement[float]:
    """The database's current time in epoch seconds, as a SQL expression.

    Leases and claims expire by this clock, never by a client's.
    """
    if conn.dialect.name == "postgresql":
        return cast(func.extract("epoch", func.clock_timestamp()), Double)
    return cast((func.julianday("now") - 2440587.5) * 86400.0, Double)


async def upsert(
    conn: AsyncConnection,
    table: Table,
    values: dict[str, Any],
    keys: list[str],
    update: dict[str, Any] | None = None,
) -> None:
    """Insert ``values``; on a key conflict apply ``update`` (None: leave the row)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(values)
    if update:
        await conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update))
    else:
        await conn.execute(stmt.on_conflict_do_nothing(index_elements=keys))
