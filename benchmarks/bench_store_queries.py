"""Query latency of the message list filters on a store of 1,000,000 messages.

The store is built once by ``scripts/generate_store.py`` (reused if present).
For each filter it times ``list_messages`` (a page of 50 with the delivery
states of each row) and, as the peer, the hand-written SQL a DBA would type
for the same page, through the same driver, without our filter translation
or the states lookup. Prints p50/p95 of both and the p95 ratio.

Run: ``.venv/bin/python -m benchmarks.bench_store_queries [--url URL] [--count N] [--reps R]``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from stalwart.envelope import utcnow
from stalwart.store import Store
from stalwart.store.queries import MessageFilter, get_message, list_messages
from stalwart.store.schema import messages

__all__ = ["main"]

DEFAULT_URL = "sqlite:////tmp/stalwart-bench/store-1m.db"
_COLS = "id, topic, kind, sender, correlation_id, causation_id, created_at, size"
_PAGE = " ORDER BY created_at DESC, id DESC LIMIT 50"
Case = tuple[str, Callable[[random.Random], MessageFilter], Callable[[random.Random], str]]


async def _stored(url: str) -> int:
    store = await Store.open(url)
    try:
        async with store.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(messages)) or 0)
    finally:
        await store.close()


def _ensure(url: str, count: int) -> None:
    """Build the store unless it exists (a SQLite file, or a non-empty database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and Path(parsed.database or "").exists():
        return
    if parsed.get_backend_name() != "sqlite" and asyncio.run(_stored(url)) > 0:
        return
    script = Path(__file__).resolve().parent.parent / "scripts" / "generate_store.py"
    cmd = [sys.executable, str(script), "--url", url, "--count", str(count)]
    subprocess.run(cmd, check=True)


def _cases(count: int, pg: bool) -> list[Case]:
    now = utcnow()
    text_cond = (
        "search_tsv @@ plainto_tsquery('simple', 'bandpass mosaic')"
        if pg
        else "rowid IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH "
        '\'"bandpass" "mosaic"\')'
    )
    day = timedelta(days=1)

    def iso(delta: timedelta) -> str:
        stamp = now - delta
        return f"'{stamp.isoformat()}'" if pg else f"'{stamp.replace(tzinfo=None).isoformat(' ')}'"

    return [
        ("newest page", lambda r: MessageFilter(system=True), lambda r: ""),
        (
            "--topic exact",
            lambda r: MessageFilter(topic="qa.verify.eu"),
            lambda r: "WHERE topic = 'qa.verify.eu'",
        ),
        (
            "--topic pipeline.#",
            lambda r: MessageFilter(topic="pipeline.#"),
            lambda r: "WHERE topic >= 'pipeline' AND topic < 'pipelinf'",
        ),
        (
            "--topic *.*.eu",
            lambda r: MessageFilter(topic="*.*.eu"),
            lambda r: "WHERE topic LIKE '%.eu'",
        ),
        (
            "--kind",
            lambda r: MessageFilter(kind="VerifyRequest"),
            lambda r: "WHERE kind = 'VerifyRequest'",
        ),
        (
            "--sender service",
            lambda r: MessageFilter(sender="qa"),
            lambda r: "WHERE sender >= 'qa@' AND sender < 'qaA'",
        ),
        (
            "--service",
            lambda r: MessageFilter(service="archive"),
            lambda r: "WHERE id IN (SELECT message_id FROM deliveries WHERE service = 'archive')",
        ),
        (
            "--state dead",
            lambda r: MessageFilter(state="dead"),
            lambda r: "WHERE id IN (SELECT message_id FROM deliveries WHERE state = 'dead')",
        ),
        (
            "--service --state",
            lambda r: MessageFilter(service="qa", state="failed"),
            lambda r: (
                "WHERE id IN (SELECT message_id FROM deliveries "
                "WHERE service = 'qa' AND state = 'failed')"
            ),
        ),
        (
            "--since 1h",
            lambda r: MessageFilter(since=now - timedelta(hours=1)),
            lambda r: f"WHERE created_at >= {iso(timedelta(hours=1))}",
        ),
        (
            "--since/--until day",
            lambda r: MessageFilter(since=now - 11 * day, until=now - 10 * day),
            lambda r: f"WHERE created_at >= {iso(11 * day)} AND created_at < {iso(10 * day)}",
        ),
        (
            "--correlation",
            lambda r: MessageFilter(correlation_id=f"corr-{r.randrange(count // 5)}"),
            lambda r: f"WHERE correlation_id = 'corr-{r.randrange(count // 5)}'",
        ),
        (
            "--text 2 words",
            lambda r: MessageFilter(text="bandpass mosaic"),
            lambda r: f"WHERE {text_cond}",
        ),
    ]


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _time(call: Callable[[], Awaitable[Any]], reps: int) -> list[float]:
    await call()  # warm the cache and the statement
    out = []
    for _ in range(reps):
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


async def _run(url: str, count: int, reps: int) -> None:
    store = await Store.open(url)
    pg = store.dialect == "postgresql"
    try:
        async with store.engine.connect() as conn:
            total = await conn.scalar(select(func.count()).select_from(messages))
        print(f"{store.dialect} store with {total:,} messages; {reps} queries per filter")
        head = ("filter", "ours p50", "ours p95", "peer p50", "peer p95")
        print(f"{head[0]:22s} " + " ".join(f"{h:>9s}" for h in head[1:]) + "  ratio")
        rows = []
        for name, ours, peer in _cases(count, pg):
            rng_a, rng_b = random.Random(1), random.Random(1)

            async def api(api_rng: random.Random = rng_a, make: Any = ours) -> None:
                await list_messages(store, make(api_rng), limit=50)

            mine = await _time(api, reps)

            async def raw(sql_rng: random.Random = rng_b, make: Any = peer) -> None:
                async with store.engine.connect() as conn:
                    await conn.execute(text(f"SELECT {_COLS} FROM messages {make(sql_rng)}{_PAGE}"))

            theirs = await _time(raw, reps)
            rows.append(_p(mine, 0.95))
            print(
                f"{name:22s} {_p(mine, 0.5):8.1f}ms {_p(mine, 0.95):8.1f}ms "
                f"{_p(theirs, 0.5):8.1f}ms {_p(theirs, 0.95):8.1f}ms  "
                f"{_p(mine, 0.95) / _p(theirs, 0.95):5.2f}",
                flush=True,
            )
        page = await list_messages(store, MessageFilter(topic="pipeline.#"), limit=50)
        second = await _time(
            lambda: list_messages(store, MessageFilter(topic="pipeline.#"), after=page.next_cursor),
            reps,
        )
        print(f"{'next page (cursor)':22s} {_p(second, 0.5):8.1f}ms {_p(second, 0.95):8.1f}ms")
        target = page.items[0].id
        shown = await _time(lambda: get_message(store, target), reps)
        print(f"{'show (detail+chain)':22s} {_p(shown, 0.5):8.1f}ms {_p(shown, 0.95):8.1f}ms")
        print(
            f"median of the filters' p95: {statistics.median(rows):.1f} ms; "
            f"worst {max(rows):.1f} ms"
        )
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="message list latency on a large store")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=40)
    args = parser.parse_args(argv)
    _ensure(args.url, args.count)
    asyncio.run(_run(args.url, args.count, args.reps))


if __name__ == "__main__":
    main()
