"""Run the store's Alembic migrations programmatically (``stalwart store upgrade``,
``Store.open``)."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stalwart.errors import ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["HEAD", "current_revision", "head_revision", "upgrade"]

_log = logging.getLogger("stalwart.store")
_SCRIPTS: Final = Path(__file__).with_name("migrations")
HEAD: Final = "head"
_VERSION_TABLE: Final = "alembic_version"
_LOCK_KEY: Final = zlib.crc32(b"stalwart.store.migrate") & 0x7FFFFFFF


# Alembic is imported when a migration runs, not when the store package is
# or a store is checked: service processes open the store's engines and would
# otherwise carry Alembic (and Mako) in memory for nothing.


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, target: str) -> None:
    from alembic import command

    command.upgrade(_config(connection), target)


def _current(connection: Connection) -> str | None:
    if not inspect(connection).has_table(_VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalar()


async def upgrade(engine: AsyncEngine, target: str = HEAD) -> str | None:
    """Bring the schema to ``target`` (default: the newest); returns the revision reached."""
    from alembic.util import CommandError

    try:
        async with engine.begin() as conn:
            await _one_at_a_time(conn)
            await conn.run_sync(_upgrade, target)
            revision = await conn.run_sync(_current)
    except CommandError as exc:
        raise ConfigError(
            f"cannot migrate to revision {target!r}: {exc}; use head (the newest, "
            f"{head_revision()}) or an earlier revision's id"
        ) from None
    except (DBAPIError, OSError) as exc:
        raise StoreUnavailable(
            f"cannot migrate the store at {engine.url.render_as_string()}: {exc}; "
            "check that the database is running and that store.url in the settings is right"
        ) from exc
    _log.info("store schema at revision=%s", revision)
    return revision


async def _one_at_a_time(conn: AsyncConnection) -> None:
    """Hold the database's lock for migrating until this transaction ends.

    Processes that start together all find the schema behind; the first to
    take the lock migrates, the others then read the revision it committed
    and have nothing left to do. PostgreSQL: a transaction-scoped advisory
    lock; SQLite: the write lock, taken before Alembic reads the revision
    (waiting up to the 30 s busy timeout).
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    else:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None: never migrated).

    Raises :class:`StoreUnavailable` when the database cannot be reached.
    """
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    except (DBAPIError, OSError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise StoreUnavailable(
            f"cannot reach the store at {engine.url.render_as_string()}: "
            f"{detail[0] if detail else type(exc).__name__}; "
            "check that the database is running and that store.url in the settings is right"
        ) from exc


def head_revision() -> str:
    """The newest revision shipped with this version.

    Read from the revision files' names (``0005_part_tables.py`` is revision
    ``0005``), so that checking a store needs no Alembic.
    """
    return max(p.name.partition("_")[0] for p in _SCRIPTS.glob("versions/[0-9]*_*.py"))
