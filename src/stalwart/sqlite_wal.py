"""Switching a SQLite file to WAL when several processes open it at once, and the
``secure_delete`` setting of the files that are queues.

Every SQLite file stalwart keeps (the embedded bus, a spool, a SQLite store)
is opened by several processes that may start together. The switch to WAL
takes the file's exclusive lock, and a connection that read the header
before another's switch asks for it while that other connection, now in WAL,
holds the shared lock it keeps while open: the busy timeout then runs out
however long it is ("database is locked" after 30 s, seen once in about 30
concurrent migrations). Asking again with a short timeout ends that wait: the
retry reads the header afresh, finds the file in WAL already, and is done.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

__all__ = ["SECURE_DELETE", "use_wal"]

_TRY_MS = 200  # one attempt's wait; long enough for a switch that is merely busy

# Queues delete every row they hand on (an ack, a forwarded spool row). Debian's
# SQLite zeroes deleted bytes by default (secure_delete=ON), a third of a delete's
# cost, and on a page freed whole, writing the zeroed page again; FAST zeroes only
# where no extra write is needed. Deleted messages may then linger in free pages
# until reused, as in any file system: protect the files, not the free space.
SECURE_DELETE = "FAST"


def use_wal(execute: Callable[[str], object], busy_timeout: float) -> None:
    """Put the connection whose ``execute`` is given in WAL mode, retrying for up
    to ``busy_timeout`` seconds, and leave that busy timeout set on it."""
    deadline = time.monotonic() + busy_timeout
    execute(f"PRAGMA busy_timeout={_TRY_MS}")
    try:
        while True:
            try:
                execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
    finally:
        execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
