"""Sustained persistence rate of the store, against a plain batched INSERT loop and a COPY.

Workload: N messages; for every 100 of them, one lifecycle envelope with their
``sent`` and ``received`` transitions and, one group of 100 later, another
with ``consumed``, fed in the persister's batches of 1,000 envelopes. Most
deliveries get all three transitions within one batch; those of the last
group of a batch get ``consumed`` in the next one (10 % of them: 11,000
delivery rows written for 10,000 deliveries).

Every contender starts from the same decoded envelopes, and its timer covers
building the rows as well as writing them:

- ours: ``build_rows`` + ``Store.write_rows`` per batch, what the persister
  does: conflict handling on every table, deliveries folded per batch in
  Python and merged forward-only with the stored row (a delivery touched by
  two batches is written twice), the kept state counts, full-text search.
- plain INSERT: ``build_rows`` of every batch, then each delivery's final row
  picked from the whole run (a look-ahead the persister cannot have, so each
  delivery is written once, with no merge), then per batch a plain
  ``INSERT`` executemany of its messages, transitions and first-seen final
  deliveries, through SQLAlchemy Core on the same driver (aiosqlite /
  asyncpg), one transaction per batch. No conflict handling.
- COPY (PostgreSQL only): the plain-INSERT peer's rows, built the same way
  inside the timer, converted by ``driver_values`` and written by binary
  ``COPY`` (asyncpg ``copy_records_to_table`` on the raw driver connection)
  into the same indexed tables, one transaction per batch: the fastest way
  in, so the write ceiling of the machine.

Each contender runs on a fresh store, in turn, ``--runs`` times; printed are
the medians of its rates by wall time, by this process's CPU time, and (on
PostgreSQL) by the CPU time of this process plus the database's server
backends, which moves less than wall time when the machine is shared.

Then lag: the real :class:`Persister` fed for 5 s at 80% of the target rate
(5,000/s SQLite, 10,000/s PostgreSQL) and at 80% of the rate just measured,
through an in-memory transport (so the bus is not measured), reporting the
worst publish-to-commit delay.

Run: ``.venv/bin/python -m benchmarks.bench_store [--messages N] [--runs R] [--backend B]
[--skip-lag]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psutil
from sqlalchemy import Table, insert, text

from benchmarks._postgres import fresh_database
from benchmarks._store_memory_bus import MemoryBus
from stalwart.envelope import DeliveryState, Envelope, Transition, encode
from stalwart.messages import LIFECYCLE_TOPIC, LifecycleBatch
from stalwart.store import Persister, PersistOptions, Store
from stalwart.store._rows import Row, Rows, build_rows
from stalwart.store._writer import driver_values
from stalwart.store.schema import deliveries, messages, transitions

__all__ = ["main"]

TARGET = {"sqlite": 5_000, "postgres": 10_000}
_GROUP = 100
_BATCH = 1_000
Batch = list[tuple[Envelope, int]]


def _lifecycle(envs: list[Envelope], states: tuple[str, ...]) -> Envelope:
    steps = [
        Transition(
            message_id=e.id, service="pipeline", state=DeliveryState(s), topic=e.topic,
            instance="pipeline@eu/h1", message_created_at=e.created_at,
        )
        for e in envs
        for s in states
    ]  # fmt: skip
    return Envelope.new(LIFECYCLE_TOPIC, LifecycleBatch(transitions=steps))


def _stream(count: int) -> list[Envelope]:
    """Messages with their lifecycle envelopes, the ``consumed`` ones one group late."""
    out: list[Envelope] = []
    late: Envelope | None = None
    for start in range(0, count, _GROUP):
        envs = [
            Envelope.new(
                f"pipeline.process.site{i % 4}",
                {"ous": f"uid://A001/X{i:x}", "note": "calibration imaging"},
                kind="ProcessRequest",
                sender=f"dispatcher@jao/h{i % 3}",
            )
            for i in range(start, min(start + _GROUP, count))
        ]
        out += envs
        out.append(_lifecycle(envs, ("sent", "received")))
        if late is not None:
            out.append(late)
        late = _lifecycle(envs, ("consumed",))
    if late is not None:
        out.append(late)
    return out


def _batches(stream: list[Envelope]) -> list[Batch]:
    sized = [(e, len(encode(e))) for e in stream]
    return [sized[i : i + _BATCH] for i in range(0, len(sized), _BATCH)]


@contextlib.asynccontextmanager
async def _fresh_store(backend: str) -> AsyncIterator[Store]:
    """An empty, migrated store in a temporary file or a temporary PostgreSQL database."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            store = await Store.open(f"sqlite:///{tmp}/store.db")
            try:
                yield store
            finally:
                await store.close()
        return
    with fresh_database() as url:
        store = await Store.open(url)
        try:
            yield store
        finally:
            await store.close()


async def _ours(store: Store, batches: list[Batch]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) to write every batch."""
    started, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        await store.write_rows(build_rows(batch))
    return time.perf_counter() - started, time.process_time() - cpu


def _peer_rows(batches: list[Batch]) -> list[Rows]:
    """The same rows, each delivery once: its final row, in the first batch that has it.

    The peers call this inside their timer, so they pay for building the rows
    as ours does.
    """
    prepared = [build_rows(b) for b in batches]
    final: dict[tuple[str, str], dict[str, Any]] = {}
    for rows in prepared:
        final.update(rows.deliveries)
    seen: set[tuple[str, str]] = set()
    for rows in prepared:
        keys = [k for k in rows.deliveries if k not in seen]
        seen.update(keys)
        rows.deliveries = {k: final[k] for k in keys}
    return prepared


def _peer_tables(rows: Rows) -> list[tuple[Table, list[Row]]]:
    """The peers' statements of one batch: each table with its rows, empty ones left out."""
    tables = (
        (messages, rows.messages),
        (transitions, rows.transitions),
        (deliveries, list(rows.deliveries.values())),
    )
    return [(table, table_rows) for table, table_rows in tables if table_rows]


async def _peer(store: Store, batches: list[Batch]) -> tuple[float, float]:
    """Plain INSERTs of the final rows, one transaction per batch (no conflict handling)."""
    started, cpu = time.perf_counter(), time.process_time()
    for rows in _peer_rows(batches):
        async with store.engine.begin() as conn:
            for table, table_rows in _peer_tables(rows):
                await conn.execute(insert(table), table_rows)
    return time.perf_counter() - started, time.process_time() - cpu


async def _copy(store: Store, batches: list[Batch]) -> tuple[float, float]:
    """The peer's rows by binary COPY, one transaction per batch (PostgreSQL only)."""
    started, cpu = time.perf_counter(), time.process_time()
    for rows in _peer_rows(batches):
        async with store.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None  # an open asyncpg connection
            async with driver.transaction():
                for table, table_rows in _peer_tables(rows):
                    columns, records = driver_values(conn.dialect, table.name, table_rows)
                    await driver.copy_records_to_table(
                        table.name, records=records, columns=list(columns)
                    )
    return time.perf_counter() - started, time.process_time() - cpu


async def _server_cpu(store: Store) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving ``store``'s database.

    Read with psutil (the server runs on this host); 0 on SQLite. Background
    processes (WAL writer, checkpointer) are not counted, for any contender.
    """
    if store.dialect != "postgresql":
        return 0.0
    async with store.engine.connect() as conn:
        pids = (
            await conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
        ).scalars()
        total = 0.0
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system
    return total


async def _lag(backend: str, rate: float, seconds: float) -> tuple[float, int]:
    """Worst publish-to-commit delay (s) at ``rate`` messages/s, and messages sent."""
    tick = 0.02
    per_tick = max(1, int(rate * tick))
    async with _fresh_store(backend) as store:
        bus = MemoryBus()
        persister = Persister(bus, store, PersistOptions())
        runner = asyncio.create_task(persister.run())
        loop = asyncio.get_running_loop()
        sent, started, late = 0, loop.time(), None
        while loop.time() - started < seconds:
            group = [
                Envelope.new("pipeline.process.eu", {"n": sent + i}, sender="dispatcher@jao/h")
                for i in range(per_tick)
            ]
            batch = [*group, _lifecycle(group, ("sent", "received"))]
            if late is not None:
                batch.append(late)
            late = _lifecycle(group, ("consumed",))
            bus.publish_now(batch)
            sent += per_tick
            next_tick = started + (sent / per_tick) * tick
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
        await asyncio.wait_for(bus.drained.wait(), 120)
        persister.stop()
        await asyncio.wait_for(runner, 60)
        await bus.close()
        return persister.stats.max_lag, sent


async def _bench(backend: str, count: int, runs: int, lag: bool) -> None:
    batches = _batches(_stream(count))
    contenders: dict[str, Callable[[Store], Awaitable[tuple[float, float]]]] = {
        "ours": lambda store: _ours(store, batches),
        "plain INSERT": lambda store: _peer(store, batches),
    }
    if backend == "postgres":
        contenders["COPY"] = lambda store: _copy(store, batches)
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    per_cpu: dict[str, list[float]] = {name: [] for name in contenders}
    per_both: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(runs):
        for name, contender in contenders.items():
            async with _fresh_store(backend) as store:
                server = await _server_cpu(store)
                wall, cpu = await contender(store)
                server = await _server_cpu(store) - server
            rates[name].append(count / wall)
            per_cpu[name].append(count / cpu)
            per_both[name].append(count / (cpu + server))
    wall_medians = {name: statistics.median(r) for name, r in rates.items()}
    cpu_medians = {name: statistics.median(r) for name, r in per_cpu.items()}
    our_median = wall_medians["ours"]
    print(
        f"{backend:8s} messages+transitions/s: {_against_ours(wall_medians)}  "
        f"(target {TARGET[backend]:,}/s; runs "
        + "; ".join(f"{name} {[round(r) for r in rates[name]]}" for name in rates)
        + ")",
        flush=True,
    )
    print(
        f"{backend:8s} per CPU-second of this process: {_against_ours(cpu_medians)}"
        + ("  (SQLite work included)" if backend == "sqlite" else "  (server CPU excluded)"),
        flush=True,
    )
    if backend == "postgres":
        both = {name: statistics.median(r) for name, r in per_both.items()}
        print(
            f"{backend:8s} per CPU-second of this process and its server backends:"
            f" {_against_ours(both)}  (steadier than wall time on a loaded machine)",
            flush=True,
        )
    if not lag:
        return
    for label, rate in (("target", TARGET[backend]), ("measured", our_median)):
        lag, sent = await _lag(backend, rate * 0.8, 5.0)
        print(
            f"{backend:8s} lag at 80% of the {label} rate ({rate * 0.8:,.0f}/s, {sent} messages):"
            f" worst {lag:.3f} s (target < 2 s)",
            flush=True,
        )


def _conditions(batches: list[Batch]) -> str:
    """What each contender does, with the delivery rows it writes, for the printout."""
    ours = sum(len(build_rows(batch).deliveries) for batch in batches)
    final = sum(len(rows.deliveries) for rows in _peer_rows(batches))
    return (
        "every timer covers building the rows from the same decoded envelopes\n"
        f"  ours: built and written batch by batch, {ours:,} delivery rows for {final:,} deliveries"
        f" ({ours - final:,} merged forward-only with a stored row), conflict handling\n"
        f"  plain INSERT, COPY: each delivery's final row once, picked with a look-ahead"
        f" over the whole run ({final:,} rows), no conflict handling"
    )


def _against_ours(medians: dict[str, float]) -> str:
    """Each contender's median, then the ratio of every pair, ours first (1.00 = as fast)."""
    names = list(medians)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    return "  ".join(
        [f"{name} {medians[name]:,.0f}" for name in names]
        + [f"{a}/{b} {medians[a] / medians[b]:.2f}" for a, b in pairs]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="store persistence rate vs plain INSERT")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--skip-lag", action="store_true", help="measure the rates only, not the persister's lag"
    )
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"{args.messages:,} messages, 3 transitions each, batches of {_BATCH}, {args.runs} runs")
    print(_conditions(_batches(_stream(args.messages))))
    for backend in backends:
        asyncio.run(_bench(backend, args.messages, args.runs, not args.skip_lag))


if __name__ == "__main__":
    main()
