"""Build a message store of N synthetic messages quickly (for query benchmarks and demos).

Messages look like an observatory's traffic: several topics per site, chains
of causes, correlation groups, a delivery per message with a final state
(mostly consumed, some failed or dead) and its transition. The schema comes
from the store's own migrations; rows go in with bulk inserts through the
synchronous drivers (sqlite3 executemany, PostgreSQL COPY).

Run: ``.venv/bin/python scripts/generate_store.py --url sqlite:///big.db --count 1000000``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.engine import make_url

from stalwart.store import Store

SITES = ("jao", "eu", "na", "ea")
STEPS = (
    ("pipeline.process", "ProcessRequest", "dispatcher", "pipeline"),
    ("qa.verify", "VerifyRequest", "pipeline", "qa"),
    ("archive.ingest", "IngestRequest", "qa", "archive"),
    ("replica.transfer", "TransferRequest", "archive", "transfer"),
    ("tracker.update", "StateChange", "transfer", "tracker"),
)
WORDS = [
    "calibration",
    "antenna",
    "flagging",
    "imaging",
    "cube",
    "continuum",
    "spectral",
    "line",
    "bandpass",
    "phase",
    "amplitude",
    "weather",
    "delay",
    "correlator",
    "baseline",
    "mosaic",
    "mfs",
    "clean",
    "residual",
    "beam",
    "noise",
]
_MESSAGE_COLUMNS = [
    "id",
    "topic",
    "kind",
    "sender",
    "sender_service",
    "correlation_id",
    "causation_id",
    "reply_to",
    "created_at",
    "expires_at",
    "stored_at",
    "headers",
    "body",
    "size",
    "attempt",
    "signed",
    "search",
]
_DELIVERY_COLUMNS = [
    "message_id",
    "service",
    "state",
    "state_rank",
    "last_at",
    "attempts",
    "received_at",
    "failed_at",
    "consumed_at",
    "dead_at",
    "reason",
    "instance",
    "topic",
    "message_created_at",
]
_TRANSITION_COLUMNS = ["message_id", "service", "state", "attempt", "at", "reason", "instance"]
_RANK = {"failed": 2, "dead": 5, "consumed": 6}


def _uuid7(ms: int, rng: random.Random) -> str:
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62)
    return str(uuid.UUID(int=value | rng.getrandbits(62)))


def _stamp(value: datetime, sqlite: bool) -> Any:
    return value.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else value


def rows(count: int, days: float, seed: int, sqlite: bool) -> Iterator[tuple[Any, ...]]:
    """(message, delivery, transition) tuples, oldest first, over the last ``days``."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    start = now - timedelta(days=days)
    step_s = days * 86400 / max(count, 1)
    previous: str | None = None
    for i in range(count):
        created = start + timedelta(seconds=i * step_s)
        topic_base, kind, sender_svc, service = STEPS[i % len(STEPS)]
        site = SITES[(i // len(STEPS)) % len(SITES)]
        mid = _uuid7(int(created.timestamp() * 1000), rng)
        note = " ".join(rng.choices(WORDS, k=4))
        body = {"ous": f"uid://A001/X{i // len(STEPS):x}", "note": note, "n": i}
        body_json = json.dumps(body)
        sender = f"{sender_svc}@{site}/host-{i % 7}"
        topic = f"{topic_base}.{site}"
        causation = previous if i % len(STEPS) else None
        previous = mid
        message = (
            mid, topic, kind, sender, sender_svc, f"corr-{i // len(STEPS)}", causation, None,
            _stamp(created, sqlite), None, _stamp(now, sqlite), "{}", body_json,
            len(body_json) + 300, 1, 0 if sqlite else False,
            f"{topic} {kind} {sender} {body_json}",
        )  # fmt: skip
        roll = rng.random()
        state = "dead" if roll < 0.01 else "failed" if roll < 0.03 else "consumed"
        done = created + timedelta(milliseconds=rng.randint(5, 5000))
        attempts = 3 if state == "dead" else 1
        reason = None if state == "consumed" else "calibration failed"
        stamps = {s: _stamp(done, sqlite) if s == state else None for s in _RANK}
        delivery = (
            mid, service, state, _RANK[state], _stamp(done, sqlite), attempts,
            _stamp(created, sqlite), stamps["failed"], stamps["consumed"], stamps["dead"],
            reason, f"{service}@{site}/host-{i % 5}", topic, _stamp(created, sqlite),
        )  # fmt: skip
        transition = (mid, service, state, attempts, _stamp(done, sqlite), reason, delivery[11])
        yield message, delivery, transition


def _insert_sql(table: str, columns: list[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _load_sqlite(path: str, count: int, days: float, seed: int, bar: Progress) -> None:
    task = bar.add_task("messages", total=count)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-200000")
    chunk: list[tuple[Any, ...]] = []

    def flush() -> None:
        with conn:
            conn.executemany(_insert_sql("messages", _MESSAGE_COLUMNS), [c[0] for c in chunk])
            conn.executemany(_insert_sql("deliveries", _DELIVERY_COLUMNS), [c[1] for c in chunk])
            conn.executemany(_insert_sql("transitions", _TRANSITION_COLUMNS), [c[2] for c in chunk])
        bar.advance(task, len(chunk))
        chunk.clear()

    # Secondary indexes and the full-text and count triggers are rebuilt once at the end: far
    # faster than maintaining them row by row.
    deferred = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
        "AND tbl_name IN ('messages', 'deliveries', 'transitions') AND sql IS NOT NULL"
    ).fetchall()
    for kind, name, _sql in deferred:
        conn.execute(f"DROP {kind} {name}")
    try:
        for row in rows(count, days, seed, sqlite=True):
            chunk.append(row)
            if len(chunk) >= 20_000:
                flush()
        if chunk:
            flush()
    finally:
        index_task = bar.add_task("indexes", total=len(deferred) + 1)
        for _kind, _name, sql in deferred:
            conn.execute(sql)
            bar.advance(index_task)
        conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
        # The count triggers were off during the load: count once, as migration 0002 does.
        conn.execute(
            "INSERT INTO delivery_state_counts (service, state, n) "
            "SELECT service, state, count(*) FROM deliveries GROUP BY service, state"
        )
        bar.advance(index_task)
        conn.execute("ANALYZE")
        conn.commit()
        conn.close()


def _load_postgres(url: str, count: int, days: float, seed: int, bar: Progress) -> None:
    import psycopg

    task = bar.add_task("messages", total=count)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    tables = (
        ("messages", _MESSAGE_COLUMNS),
        ("deliveries", _DELIVERY_COLUMNS),
        ("transitions", _TRANSITION_COLUMNS),
    )
    with psycopg.connect(dsn) as conn:
        generated = rows(count, days, seed, sqlite=False)
        while True:
            chunk = [row for _, row in zip(range(50_000), generated, strict=False)]
            if not chunk:
                break
            with conn.cursor() as cur:
                for index, (table, columns) in enumerate(tables):
                    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in chunk:
                            copy.write_row(row[index])
            conn.commit()
            bar.advance(task, len(chunk))
        # VACUUM as well as ANALYZE: a store that has been running has been vacuumed by
        # autovacuum, which sets the visibility map that index-only scans rely on; rows
        # fresh from COPY are not marked, so every such scan would also read the table.
        bar.add_task("vacuum and analyze", total=None)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


async def _migrate(url: str) -> None:
    store = await Store.open(url)
    await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="sqlite:///path.db or postgresql://...")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0, help="spread over the last N days")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    asyncio.run(_migrate(args.url))
    parsed = make_url(args.url)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn()) as bar:
        if parsed.get_backend_name() == "sqlite":
            _load_sqlite(parsed.database or "", args.count, args.days, args.seed, bar)
        else:
            _load_postgres(args.url, args.count, args.days, args.seed, bar)
    return 0


if __name__ == "__main__":
    sys.exit(main())
