"""Retention: export old messages (optional), then delete them in batches.

The export is written and closed before anything is deleted, and only rows
stored before the export began are deleted, so a message that arrives late
(with an old ``created_at``) is never deleted without being exported.

Deliveries whose message never reached the store (published before the
subscriber's queue existed) are pruned by their last activity, exported as
lines with ``"orphan": true`` and no envelope fields.

The parts' tables are pruned by the parts' own rules (:func:`prune_parts`),
each by its own age, whatever the messages' cutoff.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

from sqlalchemy import Select, and_, delete, exists, func, or_, select, tuple_

from stalwart.config import StoreSettings
from stalwart.envelope import utcnow
from stalwart.store._store import Store
from stalwart.store.schema import (
    components,
    deliveries,
    messages,
    pruners,
    reports,
    transitions,
)

__all__ = ["DEFAULT_BATCH", "PruneResult", "count_older", "prune", "prune_parts"]

DEFAULT_BATCH: Final = 5000
Progress = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class PruneResult:
    """How many rows were exported and deleted."""

    exported: int
    messages: int
    deliveries: int
    transitions: int
    reports: int
    instances: int = 0


def _json_row(row: Any) -> dict[str, Any]:
    return {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in row._mapping.items()
        if k != "search"
    }


async def count_older(store: Store, before: datetime) -> int:
    """Messages created before ``before`` (what :func:`prune` would remove)."""
    async with store.engine.connect() as conn:
        query = select(func.count()).select_from(messages).where(messages.c.created_at < before)
        return int(await conn.scalar(query) or 0)


async def _export(
    store: Store, before: datetime, out: IO[str], batch: int, progress: Progress
) -> int:
    """Write each old message with its deliveries and transitions as one JSON line."""
    exported, after = 0, None
    async with store.engine.connect() as conn:
        while True:
            query = select(messages).where(messages.c.created_at < before)
            if after is not None:
                query = query.where(
                    or_(
                        messages.c.created_at > after[0],
                        and_(messages.c.created_at == after[0], messages.c.id > after[1]),
                    )
                )
            rows = list(
                await conn.execute(
                    query.order_by(messages.c.created_at, messages.c.id).limit(batch)
                )
            )
            if not rows:
                return exported
            ids = [r.id for r in rows]
            children: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(
                lambda: {"deliveries": [], "transitions": []}
            )
            for table, key in ((deliveries, "deliveries"), (transitions, "transitions")):
                for child in await conn.execute(select(table).where(table.c.message_id.in_(ids))):
                    children[child.message_id][key].append(_json_row(child))
            lines = [
                json.dumps({**_json_row(r), **children[r.id]}, ensure_ascii=False, default=str)
                for r in rows
            ]
            await asyncio.to_thread(out.write, "\n".join(lines) + "\n")
            exported += len(rows)
            after = (rows[-1].created_at, rows[-1].id)
            progress("export", len(rows))


def _orphans(before: datetime, batch: int) -> Select[Any]:
    """Old deliveries without a message row: ``(message_id, service)``, a batch of them."""
    has_message = exists().where(messages.c.id == deliveries.c.message_id)
    return (
        select(deliveries.c.message_id, deliveries.c.service)
        .where(deliveries.c.last_at < before, ~has_message)
        .order_by(deliveries.c.message_id, deliveries.c.service)
        .limit(batch)
    )


async def _export_orphans(store: Store, before: datetime, out: IO[str], batch: int) -> int:
    """Old orphan deliveries with their transitions, a line per message id and batch."""
    exported, after = 0, ("", "")
    async with store.engine.connect() as conn:
        while True:
            key = tuple_(deliveries.c.message_id, deliveries.c.service)
            pairs = list(await conn.execute(_orphans(before, batch).where(key > after)))
            if not pairs:
                return exported
            lines: dict[str, dict[str, Any]] = {}
            for table, name in ((deliveries, "deliveries"), (transitions, "transitions")):
                keys = tuple_(table.c.message_id, table.c.service).in_([tuple(p) for p in pairs])
                for row in await conn.execute(select(table).where(keys)):
                    line = lines.setdefault(
                        row.message_id,
                        {"id": row.message_id, "orphan": True, "deliveries": [], "transitions": []},
                    )
                    line[name].append(_json_row(row))
            text = "".join(
                json.dumps(v, ensure_ascii=False, default=str) + "\n" for v in lines.values()
            )
            await asyncio.to_thread(out.write, text)
            exported += len(lines)
            after = tuple(pairs[-1])


async def _delete_orphans(
    store: Store, before: datetime, batch: int, counts: dict[str, int]
) -> None:
    """Delete old orphan deliveries with their transitions (a startup artefact: few,
    so not part of the progress, which counts messages)."""
    while True:
        async with store.engine.begin() as conn:
            pairs = [tuple(p) for p in await conn.execute(_orphans(before, batch))]
            if not pairs:
                return
            for table, key in ((transitions, "transitions"), (deliveries, "deliveries")):
                keys = tuple_(table.c.message_id, table.c.service).in_(pairs)
                counts[key] += (await conn.execute(delete(table).where(keys))).rowcount


def _write_export(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return gzip.open(path, "wt", encoding="utf-8")


def _sync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


async def prune(
    store: Store,
    before: datetime,
    *,
    export: Path | None = None,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    forget_after: float | None = None,
) -> PruneResult:
    """Delete messages created before ``before`` (and their deliveries, transitions),
    orphan deliveries last active before it, and reports older than it; with
    ``export``, first write them to a ``.jsonl.gz``. With ``forget_after``, also
    delete the service instances silent for longer than that many seconds.

    ``progress(phase, n)`` is called as rows are exported ("export") and
    deleted ("delete").
    """
    report = progress or (lambda _phase, _n: None)
    started = utcnow()
    exported = 0
    if export is not None:
        out = await asyncio.to_thread(_write_export, export)
        try:
            exported = await _export(store, before, out, batch, report)
            exported += await _export_orphans(store, before, out, batch)
        finally:
            await asyncio.to_thread(out.close)
        await asyncio.to_thread(_sync, export)
    counts = {"messages": 0, "deliveries": 0, "transitions": 0}
    while True:
        async with store.engine.begin() as conn:
            ids = list(
                await conn.scalars(
                    select(messages.c.id)
                    .where(messages.c.created_at < before, messages.c.stored_at <= started)
                    .order_by(messages.c.created_at)
                    .limit(batch)
                )
            )
            if not ids:
                break
            for table, key in ((transitions, "transitions"), (deliveries, "deliveries")):
                done = await conn.execute(delete(table).where(table.c.message_id.in_(ids)))
                counts[key] += done.rowcount
            done = await conn.execute(delete(messages).where(messages.c.id.in_(ids)))
            counts["messages"] += done.rowcount
        report("delete", len(ids))
    await _delete_orphans(store, before, batch, counts)
    async with store.engine.begin() as conn:
        done = await conn.execute(delete(reports).where(reports.c.at < before))
        forgotten = 0
        if forget_after is not None:
            silent = components.c.last_heartbeat < started - timedelta(seconds=forget_after)
            forgotten = (await conn.execute(delete(components).where(silent))).rowcount
    return PruneResult(exported=exported, reports=done.rowcount, instances=forgotten, **counts)


async def prune_parts(store: Store, settings: StoreSettings) -> dict[str, int]:
    """Run every registered part's pruner; rows deleted per table."""
    counts: dict[str, int] = {}
    for prune_part in pruners().values():
        counts.update(await prune_part(store.engine, settings))
    return counts
