"""The outbox's durable local spool: one SQLite file, fsynced on every append.

Rows are encoded envelopes in arrival order, each with the bus it was meant
for (``bus``: the URL without its password; an embedded bus by absolute
path). A :class:`Spool` is opened for one bus and only ever sees, forwards
and counts that bus's rows, so processes on different buses may share one
file without sending each other's messages to the wrong place. Rows of an
older stalwart, which did not record their bus, have ``bus`` NULL and stay
until an operator adopts them (``stalwart outbox flush --adopt``). A short
forwarder lease per bus makes sure only one process drains a bus's rows at
a time, so they are forwarded in order.

Forwarded rows are not deleted one range at a time: the spool records how
far each bus's rows were forwarded (``forwarded``), every read skips what
lies below, and the rows themselves go at once when the table holds nothing
else (SQLite's truncation frees whole pages: a tenth of a ranged delete's
cost per row) or, while other rows remain, every ``_PURGE_EVERY`` rows.

Only appends (and adoptions) wait for the disk. Recording and removing
forwarded rows does not zero their bytes (``secure_delete=FAST``, see
:mod:`stalwart.sqlite_wal`) and is committed without an fsync
(``synchronous=NORMAL`` in WAL, as the embedded bus commits acks): a power
loss can only undo the last commits, so at worst rows already forwarded come
back and are sent again (at least once); it never undoes an append that a
later fsync covered, and loses no message.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple

from stalwart.errors import StalwartError
from stalwart.sqlite_wal import SECURE_DELETE, use_wal

__all__ = ["Spool", "SpoolError", "SpoolStatus", "SpooledRow"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        topic TEXT NOT NULL,
        spooled_at REAL NOT NULL,
        data BLOB NOT NULL,
        bus TEXT)""",
    # Rows that no longer decode (a damaged file, an incompatible version): kept
    # out of the forwarding order, never deleted by stalwart.
    """CREATE TABLE IF NOT EXISTS quarantine (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        topic TEXT NOT NULL,
        spooled_at REAL NOT NULL,
        data BLOB NOT NULL,
        error TEXT NOT NULL,
        quarantined_at REAL NOT NULL,
        bus TEXT)""",
    """CREATE TABLE IF NOT EXISTS forwarders (
        bus TEXT NOT NULL PRIMARY KEY,
        owner TEXT NOT NULL,
        until REAL NOT NULL)""",
    # How far each bus's rows were forwarded: rows at or below ``upto`` are done.
    """CREATE TABLE IF NOT EXISTS forwarded (
        bus TEXT NOT NULL PRIMARY KEY,
        upto INTEGER NOT NULL)""",
)
# Spools of older versions lack ``bus``: add it (NULL: destination unknown).
_ADDED_COLUMNS = (("outbox", "bus TEXT"), ("quarantine", "bus TEXT"))
_INDEXES = ("CREATE INDEX IF NOT EXISTS outbox_by_bus ON outbox (bus, seq)",)
_FIGURES = "count(*), coalesce(sum(length(data)), 0), min(spooled_at)"
# Rows of one bus (``bus IS ?``, then its key ``?``) not yet forwarded; the mark is read
# once per statement, so the (bus, seq) index still serves the range.
_OWN_PENDING = "bus IS ? AND seq > coalesce((SELECT upto FROM forwarded WHERE bus = ?), 0)"
# Rows of every bus not yet forwarded (``bus`` NULL is keyed '': it is never forwarded).
_ALL_PENDING = (
    "seq > coalesce((SELECT upto FROM forwarded WHERE forwarded.bus = coalesce(outbox.bus, '')), 0)"
)
# While other rows remain, forwarded rows are deleted once this many have gathered.
_PURGE_EVERY = 20_000


class SpoolError(StalwartError):
    """The outbox spool file cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    """What waits in a spool for one bus (or for all): count, bytes, the oldest row."""

    path: str
    pending: int
    bytes: int
    oldest: float | None  # Unix time the oldest pending message was spooled
    quarantined: int = 0  # rows that could not be decoded, set aside
    bus: str | None = None  # whose rows; None: not recorded (an older stalwart's spool)


class SpooledRow(NamedTuple):  # a tuple: thousands are made per second while draining
    seq: int
    id: str
    topic: str
    data: bytes


# A fetched row as a SpooledRow without a Python call per row (a drain reads thousands).
_as_spooled_row = partial(tuple.__new__, SpooledRow)


class Spool:
    """Blocking SQLite access to the rows of ``bus``; call from a worker thread
    (``asyncio.to_thread``). ``bus=None`` reads the rows whose bus is unknown."""

    def __init__(
        self,
        path: str | Path,
        durability: Literal["full", "normal"] = "full",
        *,
        bus: str | None = None,
    ) -> None:
        self.path = str(path)
        self.bus = bus
        self._lock = threading.Lock()
        self._durable = durability == "full"  # appends fsynced (synchronous=FULL)
        self._synced = self._durable  # what synchronous is set to now: FULL (True) or NORMAL
        # Reads have a connection of their own (WAL lets it read while a write commits),
        # so a drain's next rows never wait behind the last removal's fsync.
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            use_wal(self._db.execute, 30.0)
            self._db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
            self._db.execute(f"PRAGMA secure_delete={SECURE_DELETE}")
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(
                f"cannot open the outbox spool {self.path}: {exc}; check bus.outbox and "
                "that its directory is writable"
            ) from None

    def _migrate(self) -> None:
        """Add the ``bus`` column to a spool made by an older version (its rows keep
        NULL: where they were meant to go was never recorded)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for table, column in _ADDED_COLUMNS:
                names = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column.split()[0] not in names:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
            for statement in _INDEXES:
                self._db.execute(statement)
        finally:
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()

    def append(self, rows: Sequence[tuple[str, str, bytes]]) -> None:
        """Add ``(id, topic, data)`` rows for this spool's bus in one fsynced transaction."""
        now = time.time()
        with self._lock:
            try:
                self._sync(self._durable)
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO outbox (id, topic, spooled_at, data, bus) VALUES (?, ?, ?, ?, ?)",
                    [(mid, topic, now, data, self.bus) for mid, topic, data in rows],
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise SpoolError(
                    f"cannot write to the outbox spool {self.path}: {exc}; free disk space "
                    "or fix permissions"
                ) from None

    def head(self, limit: int, after: int = 0) -> list[SpooledRow]:
        """The oldest rows of this spool's bus (with a sequence above ``after``)."""
        with self._read_lock:
            if self._reader is None:
                self._reader = sqlite3.connect(
                    self.path, timeout=30.0, isolation_level=None, check_same_thread=False
                )
                self._reader.execute("PRAGMA query_only=1")
            cursor = self._reader.execute(
                f"SELECT seq, id, topic, data FROM outbox WHERE {_OWN_PENDING} AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (self.bus, self._key, after, limit),
            )
            return list(map(_as_spooled_row, cursor))  # data is a BLOB: bytes already

    def adopt(self) -> int:
        """Give the rows whose bus was never recorded to this spool's bus; how many.

        They are older than this bus's forwarded mark: its forwarded rows are
        deleted and the mark dropped first, or the adopted rows would count as sent.
        """
        with self._lock:
            self._sync(self._durable)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "DELETE FROM outbox WHERE bus IS ? AND seq <= "
                "(SELECT upto FROM forwarded WHERE bus = ?)",
                (self.bus, self._key),
            )
            self._db.execute("DELETE FROM forwarded WHERE bus = ?", (self._key,))
            moved = self._db.execute("UPDATE outbox SET bus = ? WHERE bus IS NULL", (self.bus,))
            self._db.execute("COMMIT")
            return moved.rowcount

    @property
    def _key(self) -> str:
        return self.bus or ""

    def mark_forwarded(self, last: int) -> None:
        """Mark this bus's rows up to ``last`` forwarded, without waiting for the disk,
        and delete the rows when it is cheap (see the module's docstring)."""
        with self._lock:
            self._sync(False)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO forwarded (bus, upto) VALUES (?, ?) "
                "ON CONFLICT (bus) DO UPDATE SET upto = max(upto, excluded.upto)",
                (self._key, last),
            )
            if self._nothing_else_up_to(last):
                self._db.execute("DELETE FROM outbox")  # truncation: no WHERE
            elif self._oldest() <= last - _PURGE_EVERY:  # enough forwarded rows gathered
                self._db.execute("DELETE FROM outbox WHERE bus IS ? AND seq <= ?", (self.bus, last))
            self._db.execute("COMMIT")

    def _nothing_else_up_to(self, last: int) -> bool:
        """Whether every row in the file is this bus's and at most ``last`` (forwarded)."""
        newest = self._db.execute("SELECT max(seq) FROM outbox").fetchone()[0]
        if newest is None:
            return False  # empty already
        if newest > last:
            return False
        other = "SELECT 1 FROM outbox WHERE bus IS NOT ? LIMIT 1"
        return self._db.execute(other, (self.bus,)).fetchone() is None

    def _oldest(self) -> int:
        query = "SELECT min(seq) FROM outbox WHERE bus IS ?"
        oldest = self._db.execute(query, (self.bus,)).fetchone()[0]
        return int(oldest) if oldest is not None else 0

    def _sync(self, durable: bool) -> None:
        """Make the next commits fsynced (``durable``) or not; call holding the lock."""
        if durable != self._synced:
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._synced = durable

    def quarantine(self, seq: int, error: str) -> None:
        """Move row ``seq`` out of the forwarding order into ``quarantine``, with why."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR IGNORE INTO quarantine "
                "(seq, id, topic, spooled_at, data, error, quarantined_at, bus) "
                "SELECT seq, id, topic, spooled_at, data, ?, ?, bus FROM outbox WHERE seq = ?",
                (error, time.time(), seq),
            )
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._db.execute("COMMIT")

    def status(self) -> SpoolStatus:
        """What waits for this spool's bus (quarantined: every bus's set-aside rows)."""
        with self._lock:
            count, size, oldest = self._db.execute(
                f"SELECT {_FIGURES} FROM outbox WHERE {_OWN_PENDING}", (self.bus, self._key)
            ).fetchone()
            quarantined = self._quarantined()
        return SpoolStatus(self.path, int(count), int(size), oldest, quarantined, self.bus)

    def by_bus(self) -> list[SpoolStatus]:
        """What waits for each bus in the whole file (bus None: never recorded)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_FIGURES}, bus FROM outbox WHERE {_ALL_PENDING} GROUP BY bus ORDER BY bus"
            ).fetchall()
            quarantined = self._quarantined()
        return [
            SpoolStatus(self.path, int(count), int(size), oldest, quarantined, bus)
            for count, size, oldest, bus in rows
        ]

    def _quarantined(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM quarantine").fetchone()[0])

    def pending(self) -> int:
        with self._lock:
            query = f"SELECT count(*) FROM outbox WHERE {_OWN_PENDING}"
            return int(self._db.execute(query, (self.bus, self._key)).fetchone()[0])

    def claim(self, owner: str, seconds: float) -> bool:
        """Take or renew this bus's forwarder lease; False while another live owner holds it."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT owner, until FROM forwarders WHERE bus IS ?", (self.bus,)
                ).fetchone()
                if row is not None and row[0] != owner and row[1] > now:
                    return False
                self._db.execute(
                    "INSERT OR REPLACE INTO forwarders (bus, owner, until) VALUES (?, ?, ?)",
                    (self.bus, owner, now + seconds),
                )
                return True
            finally:
                self._db.execute("COMMIT")

    def release(self, owner: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM forwarders WHERE bus IS ? AND owner = ?", (self.bus, owner)
            )
