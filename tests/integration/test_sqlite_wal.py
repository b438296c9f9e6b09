"""Many connections switching one new SQLite file to WAL at the same moment."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from stalwart.sqlite_wal import use_wal

OPENERS = 8


def _open_together(path: Path) -> list[Exception]:
    """``OPENERS`` threads open ``path`` at once, switch it to WAL and write; their errors."""
    start = threading.Barrier(OPENERS)
    errors: list[Exception] = []

    def opener() -> None:
        conn = sqlite3.connect(path, timeout=2.0, isolation_level=None)
        try:
            start.wait()
            use_wal(conn.execute, 2.0)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS t(x)")
            conn.execute("COMMIT")
            time.sleep(0.02)  # stay open, in WAL, while the others switch
        except Exception as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=opener) for _ in range(OPENERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_connections_opening_a_new_file_at_once_all_get_wal(tmp_path: Path) -> None:
    # Given new files, each opened by eight connections at the same moment
    # (a plain PRAGMA journal_mode=WAL fails "database is locked" in about one
    # trial in eight here)
    failures = []
    for trial in range(40):
        path = tmp_path / f"{trial}.db"
        # When each switches it to WAL and writes
        failures += _open_together(path)
        # Then none failed, and the file is in WAL
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert failures == []


def test_the_busy_timeout_is_left_as_asked(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.db")
    try:
        use_wal(conn.execute, 7.5)
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (7500,)
    finally:
        conn.close()


def test_an_error_other_than_a_lock_is_raised_at_once(tmp_path: Path) -> None:
    # Given a file that is not a database
    path = tmp_path / "not.db"
    path.write_bytes(b"this is not a sqlite file, only text" * 100)
    conn = sqlite3.connect(path)
    try:
        began = time.monotonic()
        # Then the switch fails with SQLite's own error, without retrying for the timeout
        with pytest.raises(sqlite3.DatabaseError, match="not a database"):
            use_wal(conn.execute, 5.0)
        assert time.monotonic() - began < 2.0
    finally:
        conn.close()
