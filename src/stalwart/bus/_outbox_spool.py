"""The outbox's durable local spool: one SQLite file, fsynced on every write.

Rows are encoded envelopes in arrival order. Several processes on one host
may share a spool; a short forwarder lease in the same file makes sure only
one of them drains it at a time, so a spool is forwarded in order.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stalwart.errors import StalwartError

__all__ = ["Spool", "SpoolError", "SpoolStatus", "SpooledRow"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        topic TEXT NOT NULL,
        spooled_at REAL NOT NULL,
        data BLOB NOT NULL)""",
    # Rows that no longer decode (a damaged file, an incompatible version): kept
    # out of the forwarding order, never deleted by stalwart.
    """CREATE TABLE IF NOT EXISTS quarantine (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        topic TEXT NOT NULL,
        spooled_at REAL NOT NULL,
        data BLOB NOT NULL,
        error TEXT NOT NULL,
        quarantined_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS forwarder (
        slot INTEGER PRIMARY KEY CHECK (slot = 1),
        owner TEXT NOT NULL,
        until REAL NOT NULL)""",
)


class SpoolError(StalwartError):
    """The outbox spool file cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    """What waits in a spool: count, bytes and the oldest row's age."""

    path: str
    pending: int
    bytes: int
    oldest: float | None  # Unix time the oldest pending message was spooled
    quarantined: int = 0  # rows that could not be decoded, set aside


@dataclass(frozen=True, slots=True)
class SpooledRow:
    seq: int
    data: bytes


class Spool:
    """Blocking SQLite access; call from a worker thread (``asyncio.to_thread``)."""

    def __init__(self, path: str | Path, durability: Literal["full", "normal"] = "full") -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
            for statement in _SCHEMA:
                self._db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(
                f"cannot open the outbox spool {self.path}: {exc}; check bus.outbox and "
                "that its directory is writable"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, rows: list[tuple[str, str, bytes]]) -> None:
        """Add ``(id, topic, data)`` rows in one fsynced transaction."""
        now = time.time()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO outbox (id, topic, spooled_at, data) VALUES (?, ?, ?, ?)",
                    [(mid, topic, now, data) for mid, topic, data in rows],
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise SpoolError(
                    f"cannot write to the outbox spool {self.path}: {exc}; free disk space "
                    "or fix permissions"
                ) from None

    def head(self, limit: int) -> list[SpooledRow]:
        with self._lock:
            cursor = self._db.execute("SELECT seq, data FROM outbox ORDER BY seq LIMIT ?", (limit,))
            return [SpooledRow(seq, bytes(data)) for seq, data in cursor.fetchall()]

    def remove(self, seqs: list[int]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            self._db.execute("COMMIT")

    def quarantine(self, seq: int, error: str) -> None:
        """Move row ``seq`` out of the forwarding order into ``quarantine``, with why."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR IGNORE INTO quarantine "
                "SELECT seq, id, topic, spooled_at, data, ?, ? FROM outbox WHERE seq = ?",
                (error, time.time(), seq),
            )
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._db.execute("COMMIT")

    def status(self) -> SpoolStatus:
        with self._lock:
            count, size, oldest = self._db.execute(
                "SELECT count(*), coalesce(sum(length(data)), 0), min(spooled_at) FROM outbox"
            ).fetchone()
            (quarantined,) = self._db.execute("SELECT count(*) FROM quarantine").fetchone()
        return SpoolStatus(self.path, int(count), int(size), oldest, int(quarantined))

    def pending(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def claim(self, owner: str, seconds: float) -> bool:
        """Take or renew the forwarder lease; False while another live owner holds it."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT owner, until FROM forwarder WHERE slot = 1"
                ).fetchone()
                if row is not None and row[0] != owner and row[1] > now:
                    return False
                self._db.execute(
                    "INSERT OR REPLACE INTO forwarder (slot, owner, until) VALUES (1, ?, ?)",
                    (owner, now + seconds),
                )
                return True
            finally:
                self._db.execute("COMMIT")

    def release(self, owner: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM forwarder WHERE slot = 1 AND owner = ?", (owner,))
