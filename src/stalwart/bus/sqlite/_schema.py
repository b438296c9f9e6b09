"""The embedded bus's on-disk layout and how a connection to it is opened.

One SQLite file in WAL mode holds every queue. ``messages`` keeps one row per
(queue, message) copy; a row is claimable when ``visible_at`` has passed, so
ready, delayed (retry backoff) and leased (in flight) messages share one
index. ``owner`` is set while a consumer holds the row's lease.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final, Literal

from stalwart.errors import BrokerUnavailable, ConfigError
from stalwart.sqlite_wal import SECURE_DELETE, use_wal

__all__ = ["BUSY_TIMEOUT", "SCHEMA_VERSION", "connect", "db_path_from_url"]

SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT: Final = 30.0

_DDL: Final = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    patterns TEXT NOT NULL,
    max_attempts INTEGER NOT NULL,
    retry_initial REAL NOT NULL,
    retry_max REAL NOT NULL,
    lease REAL NOT NULL,
    ephemeral INTEGER NOT NULL DEFAULT 0,
    owner_host TEXT,
    owner_pid INTEGER,
    owner_started REAL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    raw BLOB NOT NULL,
    visible_at REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    owner INTEGER,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (queue, visible_at, id);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    raw BLOB NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    died_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_queue ON dead (queue, id);
INSERT OR IGNORE INTO meta (key, value) VALUES ('bindings', 0);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', 1);
"""


def db_path_from_url(url: str) -> Path:
    """``sqlite:///rel/bus.db`` -> ``rel/bus.db``; ``sqlite:////abs/bus.db`` -> ``/abs/bus.db``."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "sqlite" or not sep or not rest.startswith("/") or rest == "/":
        raise ConfigError(
            f"bad embedded bus URL {url!r}: use sqlite:///relative/path/bus.db "
            "or sqlite:////absolute/path/bus.db"
        )
    path = rest[1:].split("?", 1)[0]
    if not path or path == ":memory:":
        raise ConfigError(
            f"bad embedded bus URL {url!r}: the bus needs a file so that several "
            "processes share it, e.g. sqlite:///.stalwart/bus.db"
        )
    return Path(path)


def connect(path: Path, durability: Literal["full", "normal"]) -> sqlite3.Connection:
    """Open (creating if needed) the bus file in WAL mode with the schema in place.

    Autocommit mode (``isolation_level=None``): the writer issues its own
    ``BEGIN IMMEDIATE`` so that the write lock is taken up front and waits on
    the busy timeout instead of failing half-way through a transaction.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise BrokerUnavailable(
            f"cannot open the embedded bus at {path}: {exc}; check that the directory "
            "is writable and on a local disk"
        ) from exc
    try:
        use_wal(conn.execute, BUSY_TIMEOUT)
        conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        conn.execute(f"PRAGMA secure_delete={SECURE_DELETE}")  # acks: see sqlite_wal
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-16000")
        conn.execute("PRAGMA wal_autocheckpoint=8000")  # hot queue pages: fewer rewrites
        conn.execute("PRAGMA journal_size_limit=67108864")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.close()
        raise BrokerUnavailable(
            f"cannot prepare the embedded bus at {path}: {exc}; if the file is not a "
            "stalwart bus, point bus.url at a new path"
        ) from exc
    return conn
