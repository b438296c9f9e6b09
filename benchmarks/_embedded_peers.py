"""Peers of the embedded bus benchmark, each with one producer and consumer processes.

* ``persistqueue.SQLiteAckQueue`` (PyPI persist-queue): a popular SQLite-backed
  ack queue, used as documented (put, get, ack), one instance per process.
* A plain SQLite batched queue: insert, claim and delete in batches of 100 in
  WAL mode, with the bus's durability per step: inserts (publishes) fsynced
  (``synchronous=FULL``), claims and deletes (acks) committed without an fsync
  (``synchronous=NORMAL``), as the bus at ``durability="full"`` does; close to
  what SQLite itself can do with the same durability, and the near-limit the
  bus is measured against. Like the bus, it deletes without zeroing the bytes
  (``secure_delete=FAST``; Debian's SQLite zeroes them by default).

The driver makes each peer's database (:func:`plain_prepare`, :func:`pq_prepare`)
before the consumer processes start, as it does the bus's: two processes
opening a fresh file at once race to set it up ("database is locked").

Every consumer records ``(message number, publish time, ack time)`` per acked message,
the ack time once the ack is committed, so the driver counts losses and duplicates
and measures latency the same way for every contender.
"""

from __future__ import annotations

import json
import os
import queue
import random
import sqlite3
import time
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

__all__ = [
    "PLAIN_BATCH",
    "body_for",
    "plain_consume",
    "plain_prepare",
    "plain_produce",
    "pq_consume",
    "pq_prepare",
    "pq_produce",
]

_PAD = "x" * 960  # with the envelope fields, about 1 KiB on the wire
PLAIN_BATCH = 100


def body_for(n: int) -> dict[str, Any]:
    return {"n": n, "t": time.time(), "pad": _PAD}


# -- persist-queue ---------------------------------------------------------------------


def pq_prepare(path: Path) -> None:
    """Create the queue's database before any consumer opens it."""
    from persistqueue import SQLiteAckQueue

    SQLiteAckQueue(str(path), multithreading=True, auto_resume=False)


def pq_produce(path: Path, count: int) -> None:
    from persistqueue import SQLiteAckQueue

    q = SQLiteAckQueue(str(path), multithreading=True, auto_resume=False)
    for n in range(count):
        q.put(body_for(n))


def pq_consume(
    path: Path, ready: Event, stop: Event, progress: Synchronized[int]
) -> list[tuple[int, float, float]]:
    from persistqueue import SQLiteAckQueue
    from persistqueue.exceptions import Empty as PersistEmpty

    q = SQLiteAckQueue(str(path), multithreading=True, auto_resume=False)
    seen: list[tuple[int, float, float]] = []
    ready.set()
    while not stop.is_set():
        try:
            item = q.get(block=True, timeout=0.05)
        except (queue.Empty, PersistEmpty):
            continue
        q.ack(item)
        seen.append((item["n"], item["t"], time.time()))
        progress.value += 1
    return seen


# -- plain SQLite, batches of 100 --------------------------------------------------------


def plain_prepare(path: Path) -> None:
    """Create the queue's database (WAL, the table) before any consumer opens it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, body BLOB NOT NULL, owner INTEGER)"
    )
    conn.close()


def _plain_connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA secure_delete=FAST")  # as the bus: deletes do not zero bytes
    conn.execute("PRAGMA busy_timeout=0")  # _begin retries faster than SQLite's handler
    return conn


def _begin(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE with sub-millisecond retries (SQLite's busy handler sleeps 1-100 ms)."""
    delay = 0.0002
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            time.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 1.5, 0.004)


def plain_produce(path: Path, count: int) -> None:
    conn = _plain_connect(path, "FULL")  # a publish is on disk when it returns
    for start in range(0, count, PLAIN_BATCH):
        rows = [
            (json.dumps(body_for(n)).encode(),)
            for n in range(start, min(start + PLAIN_BATCH, count))
        ]
        _begin(conn)
        conn.executemany("INSERT INTO q (body) VALUES (?)", rows)
        conn.execute("COMMIT")
    conn.close()


def plain_consume(
    path: Path, ready: Event, stop: Event, progress: Synchronized[int]
) -> list[tuple[int, float, float]]:
    conn = _plain_connect(path, "NORMAL")  # claims and acks: committed, no fsync
    me = os.getpid()
    seen: list[tuple[int, float, float]] = []
    ready.set()
    while not stop.is_set():
        _begin(conn)
        rows = conn.execute(
            "UPDATE q SET owner = ? WHERE id IN "
            "(SELECT id FROM q WHERE owner IS NULL ORDER BY id LIMIT ?) RETURNING id, body",
            (me, PLAIN_BATCH),
        ).fetchall()
        conn.execute("COMMIT")
        if not rows:
            time.sleep(0.001)
            continue
        bodies = [json.loads(raw) for _, raw in rows]
        _begin(conn)
        conn.executemany("DELETE FROM q WHERE id = ?", [(row_id,) for row_id, _ in rows])
        conn.execute("COMMIT")
        acked = time.time()  # the ack is the DELETE's commit
        seen.extend((body["n"], body["t"], acked) for body in bodies)
        progress.value += len(rows)
    conn.close()
    return seen
