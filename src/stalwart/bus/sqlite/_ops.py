"""The SQL of the embedded bus, as operations the group-commit writer runs.

Each operation is a plain function ``(conn, touched, ...) -> result`` called
inside a transaction the writer opened; it adds to ``touched`` the queues
whose claimable rows it changed so that their consumers get woken. Routing
state (queues and their bindings) is cached per process and reloaded only
when the ``bindings`` version in ``meta`` moves, which any process bumps when
it declares or deletes a queue.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from stalwart.bus._transport import QueueSpec
from stalwart.errors import TransportError
from stalwart.topics import Pattern

__all__ = [
    "Claimed",
    "Router",
    "claim",
    "dead_rows",
    "declare",
    "delete_queue",
    "extend",
    "list_dead",
    "list_queues",
    "live_ephemeral_owners",
    "publish",
    "purge_dead",
    "release",
    "requeue_dead",
    "retry",
    "settle_acks",
    "settle_dead",
    "stats",
]

Touched = set[str]
Lease = tuple[int, int, int]  # (row id, owner token, attempt)


class Router:
    """Queues, their specs and bindings, as last read from the file; topic -> queues."""

    def __init__(self) -> None:
        self.version = -1
        self.specs: dict[str, QueueSpec] = {}
        self._patterns: list[tuple[Pattern, str]] = []
        self._routes: dict[str, tuple[str, ...]] = {}
        self._last_visible = 0.0

    def refresh(self, conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'bindings'").fetchone()
        if version == self.version:
            return
        specs: dict[str, QueueSpec] = {}
        patterns: list[tuple[Pattern, str]] = []
        for row in conn.execute(
            "SELECT name, patterns, max_attempts, retry_initial, retry_max, lease, ephemeral "
            "FROM queues"
        ):
            name, raw_patterns, max_attempts, initial, cap, lease, ephemeral = row
            spec = QueueSpec(
                name=name,
                patterns=tuple(json.loads(raw_patterns)),
                max_attempts=max_attempts,
                retry_initial=initial,
                retry_max=cap,
                lease=lease,
                ephemeral=bool(ephemeral),
            )
            specs[name] = spec
            patterns.extend((Pattern(p), name) for p in spec.patterns)
        self.version, self.specs, self._patterns, self._routes = version, specs, patterns, {}

    def route(self, topic: str) -> tuple[str, ...]:
        found = self._routes.get(topic)
        if found is None:
            found = tuple(sorted({name for pat, name in self._patterns if pat.matches(topic)}))
            if len(self._routes) > 10_000:
                self._routes.clear()
            self._routes[topic] = found
        return found

    def spec(self, conn: sqlite3.Connection, queue: str) -> QueueSpec:
        self.refresh(conn)
        spec = self.specs.get(queue)
        if spec is None:
            raise TransportError(
                f"queue {queue!r} is not declared on this bus; declare it (start its "
                "service) before consuming, or check the name with `stalwart dlq list`"
            )
        return spec

    def next_visible(self) -> float:
        """Now, but never earlier than the last publish: keeps one producer's order."""
        now = max(time.time(), self._last_visible)
        self._last_visible = now
        return now


def publish(
    conn: sqlite3.Connection,
    touched: Touched,
    router: Router,
    batches: Sequence[Sequence[tuple[str, bytes]]],
) -> list[int]:
    """Copy each ``(topic, raw)`` into every queue bound to its topic; copies per batch."""
    router.refresh(conn)
    now = router.next_visible()
    rows: list[tuple[str, bytes, float]] = []
    copies = []
    for items in batches:
        before = len(rows)
        rows.extend((queue, raw, now) for topic, raw in items for queue in router.route(topic))
        copies.append(len(rows) - before)
    if rows:
        conn.executemany("INSERT INTO messages (queue, raw, visible_at) VALUES (?, ?, ?)", rows)
        touched.update(row[0] for row in rows)
    return copies


def settle_acks(conn: sqlite3.Connection, touched: Touched, leases: Sequence[Lease]) -> list[bool]:
    """Delete each row whose lease is still held; True per lease that was."""
    delete = "DELETE FROM messages WHERE id = ? AND owner = ? AND attempt = ?"
    return [conn.execute(delete, lease).rowcount == 1 for lease in leases]


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one claim found: leased rows ``(id, raw, attempt)`` and the next due time."""

    rows: list[tuple[int, bytes, int]]
    next_at: float | None
    spec: QueueSpec


def claim(
    conn: sqlite3.Connection, touched: Touched, router: Router, queue: str, owner: int, limit: int
) -> Claimed:
    """Lease up to ``limit`` due rows of ``queue`` in one statement.

    A row whose previous lease ran out comes back with ``attempt + 1``; past
    the queue's ``max_attempts`` it goes to the dead letters instead.
    """
    spec = router.spec(conn, queue)
    now = time.time()
    rows = conn.execute(
        "UPDATE messages SET attempt = attempt + (owner IS NOT NULL), owner = ?, visible_at = ? "
        "WHERE id IN (SELECT id FROM messages WHERE queue = ? AND visible_at <= ? "
        "ORDER BY visible_at, id LIMIT ?) RETURNING id, raw, attempt",
        (owner, now + spec.lease, queue, now, limit),
    ).fetchall()
    if not rows:
        head = conn.execute(
            "SELECT visible_at FROM messages WHERE queue = ? ORDER BY visible_at LIMIT 1", (queue,)
        ).fetchone()
        return Claimed([], None if head is None else head[0], spec)
    rows.sort()
    over = [row for row in rows if row[2] > spec.max_attempts]
    if over:
        reason = (
            f"lease expired {spec.max_attempts} times: each consumer died or stalled "
            "without renewing its lease"
        )
        dead_rows(conn, [(row[0], owner, row[2]) for row in over], reason, attempts_offset=-1)
        rows = [row for row in rows if row[2] <= spec.max_attempts]
    return Claimed(rows, None, spec)


def dead_rows(
    conn: sqlite3.Connection, leases: Sequence[Lease], reason: str, attempts_offset: int = 0
) -> int:
    """Move leased rows to the dead letters with ``reason``; returns how many moved."""
    now = time.time()
    moved = 0
    for row_id, owner, attempt in leases:
        cur = conn.execute(
            "INSERT INTO dead (queue, raw, reason, attempts, died_at) "
            "SELECT queue, raw, ?, attempt + ?, ? FROM messages "
            "WHERE id = ? AND owner = ? AND attempt = ?",
            (reason, attempts_offset, now, row_id, owner, attempt),
        )
        if cur.rowcount:
            conn.execute("DELETE FROM messages WHERE id = ?", (row_id,))
            moved += 1
    return moved


def settle_dead(conn: sqlite3.Connection, touched: Touched, lease: Lease, reason: str) -> bool:
    return dead_rows(conn, [lease], reason) == 1


def retry(
    conn: sqlite3.Connection,
    touched: Touched,
    queue: str,
    lease: Lease,
    max_attempts: int,
    delay: float,
    reason: str,
) -> bool | None:
    """Back to the queue after ``delay`` with ``attempt + 1``, or dead after the last attempt.

    Returns True (will be retried), False (dead-lettered) or None (lease lost).
    """
    row_id, owner, attempt = lease
    if attempt >= max_attempts:
        moved = dead_rows(conn, [lease], f"failed {attempt} attempts; last: {reason}")
        return False if moved else None
    cur = conn.execute(
        "UPDATE messages SET attempt = attempt + 1, owner = NULL, visible_at = ?, reason = ? "
        "WHERE id = ? AND owner = ? AND attempt = ?",
        (time.time() + max(delay, 0.0), reason, row_id, owner, attempt),
    )
    touched.add(queue)
    return True if cur.rowcount else None


def extend(conn: sqlite3.Connection, touched: Touched, lease: Lease, seconds: float) -> bool:
    cur = conn.execute(
        "UPDATE messages SET visible_at = ? WHERE id = ? AND owner = ? AND attempt = ?",
        (time.time() + seconds, *lease),
    )
    return cur.rowcount == 1


def release(conn: sqlite3.Connection, touched: Touched, queue: str, leases: Sequence[Lease]) -> int:
    """Hand leased rows back at once, same attempt (the consumer stopped, it did not fail)."""
    now = time.time()
    released = 0
    for lease in leases:
        cur = conn.execute(
            "UPDATE messages SET owner = NULL, visible_at = ? "
            "WHERE id = ? AND owner = ? AND attempt = ?",
            (now, *lease),
        )
        released += cur.rowcount
    if released:
        touched.add(queue)
    return released


def declare(
    conn: sqlite3.Connection,
    touched: Touched,
    spec: QueueSpec,
    owner: tuple[str, int, float] | None,
) -> None:
    """Create or update a queue; bumps the bindings version when anything changed."""
    host, pid, started = owner if owner else (None, None, None)
    values = (
        json.dumps(sorted(set(spec.patterns))),
        spec.max_attempts,
        spec.retry_initial,
        spec.retry_max,
        spec.lease,
        int(spec.ephemeral),
    )
    current = conn.execute(
        "SELECT patterns, max_attempts, retry_initial, retry_max, lease, ephemeral "
        "FROM queues WHERE name = ?",
        (spec.name,),
    ).fetchone()
    if current is not None and tuple(current) == values:
        return
    conn.execute(
        "INSERT INTO queues (name, patterns, max_attempts, retry_initial, retry_max, lease, "
        "ephemeral, owner_host, owner_pid, owner_started, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "patterns = excluded.patterns, max_attempts = excluded.max_attempts, "
        "retry_initial = excluded.retry_initial, retry_max = excluded.retry_max, "
        "lease = excluded.lease",
        (spec.name, *values, host, pid, started, time.time()),
    )
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'bindings'")


def delete_queue(conn: sqlite3.Connection, touched: Touched, name: str) -> None:
    conn.execute("DELETE FROM messages WHERE queue = ?", (name,))
    conn.execute("DELETE FROM dead WHERE queue = ?", (name,))
    if conn.execute("DELETE FROM queues WHERE name = ?", (name,)).rowcount:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'bindings'")


def live_ephemeral_owners(
    conn: sqlite3.Connection, touched: Touched
) -> list[tuple[str, str | None, int | None, float | None]]:
    return conn.execute(
        "SELECT name, owner_host, owner_pid, owner_started FROM queues WHERE ephemeral = 1"
    ).fetchall()


def stats(conn: sqlite3.Connection, touched: Touched, queue: str) -> tuple[int, int, int, int]:
    """(ready, inflight, delayed, dead) counts."""
    now = time.time()
    ready, inflight, delayed = conn.execute(
        "SELECT COALESCE(SUM(owner IS NULL AND visible_at <= ?), 0), "
        "COALESCE(SUM(owner IS NOT NULL), 0), COALESCE(SUM(owner IS NULL AND visible_at > ?), 0) "
        "FROM messages WHERE queue = ?",
        (now, now, queue),
    ).fetchone()
    (dead,) = conn.execute("SELECT COUNT(*) FROM dead WHERE queue = ?", (queue,)).fetchone()
    return int(ready), int(inflight), int(delayed), int(dead)


def list_queues(conn: sqlite3.Connection, touched: Touched) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM queues WHERE ephemeral = 0 ORDER BY name")]


def list_dead(
    conn: sqlite3.Connection, touched: Touched, queue: str, limit: int
) -> list[tuple[int, bytes, str, int, float]]:
    return conn.execute(
        "SELECT id, raw, reason, attempts, died_at FROM dead WHERE queue = ? ORDER BY id LIMIT ?",
        (queue, limit),
    ).fetchall()


def _dead_filter(queue: str, keys: Sequence[str] | None) -> tuple[str, list[object]]:
    if keys is None:
        return "queue = ?", [queue]
    ids: list[object] = []
    for key in keys:
        if not key.isdigit():
            raise TransportError(f"bad dead-letter key {key!r}: use the keys `dlq list` shows")
        ids.append(int(key))
    marks = ",".join("?" * len(ids)) or "NULL"
    return f"queue = ? AND id IN ({marks})", [queue, *ids]


def requeue_dead(
    conn: sqlite3.Connection, touched: Touched, queue: str, keys: Sequence[str] | None
) -> int:
    """Dead letters back into their queue as fresh first attempts."""
    where, params = _dead_filter(queue, keys)
    cur = conn.execute(
        "INSERT INTO messages (queue, raw, visible_at, attempt) "
        f"SELECT queue, raw, ?, 1 FROM dead WHERE {where} ORDER BY id",
        [time.time(), *params],
    )
    conn.execute(f"DELETE FROM dead WHERE {where}", params)
    if cur.rowcount:
        touched.add(queue)
    return cur.rowcount


def purge_dead(
    conn: sqlite3.Connection, touched: Touched, queue: str, keys: Sequence[str] | None
) -> int:
    where, params = _dead_filter(queue, keys)
    return conn.execute(f"DELETE FROM dead WHERE {where}", params).rowcount
