"""Database engines from the user's store URL, on a schema at the newest revision.

Users write ``sqlite:///path/store.db`` or ``postgresql://user@host/db``; this
picks the async driver (aiosqlite, asyncpg) and sets SQLite up for many
processes on one host (WAL, a busy timeout, foreign keys). Parts open the
store with :func:`open_engine`, which migrates it when behind: every table
is made by the store's migrations, none by a part.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Double, Table, cast, event, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import ColumnElement

from stalwart.errors import ConfigError
from stalwart.sqlite_wal import use_wal
from stalwart.store.migrate import current_revision, head_revision, upgrade

__all__ = [
    "async_url",
    "db_now",
    "ensure_head",
    "make_engine",
    "open_engine",
    "upsert",
]


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
    use_wal(cursor.execute, 30.0)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def open_engine(url: str, *, migrate: bool = True, **options: Any) -> AsyncEngine:
    """An engine on the store at ``url`` whose schema is at the newest revision.

    The way every part opens the store's database: with ``migrate`` (the
    default) a schema behind is migrated here (see :func:`ensure_head`). The
    folder of a SQLite file is created. Connections are checked before use
    unless ``pool_pre_ping`` says otherwise. Raises :class:`StoreUnavailable`
    when the database cannot be reached.
    """
    _make_parent(url)
    engine = make_engine(url, **{"pool_pre_ping": True, **options})
    if migrate:
        try:
            await ensure_head(engine)
        except BaseException:
            await engine.dispose()
            raise
    return engine


_at_head: weakref.WeakSet[AsyncEngine] = weakref.WeakSet()


async def ensure_head(engine: AsyncEngine) -> None:
    """Migrate ``engine``'s database to the newest revision unless it is there.

    Once per engine: later calls return at once. For a part that made its
    engine before the database could be reached and retries until it can.
    Safe when many processes start at once (:func:`~stalwart.store.migrate.upgrade`
    migrates one at a time). Raises :class:`StoreUnavailable`.
    """
    if engine in _at_head:
        return
    if await current_revision(engine) != head_revision():
        await upgrade(engine)
    _at_head.add(engine)


def _make_parent(url: str) -> None:
    """Create the folder of a SQLite file (``.stalwart/`` on first use)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)


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
