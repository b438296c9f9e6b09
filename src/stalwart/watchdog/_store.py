"""The ``watchdog_programs`` table: the latest state of every supervised instance.

The watchdog writes it in the background (coalescing many changes into one
upsert per instance and interval); ``stalwart watchdog status`` and the
dashboard read it with :func:`program_states`. A store outage never blocks
supervision: rows wait in memory and are written once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    not_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.backoff import jittered
from stalwart.config import StoreSettings
from stalwart.envelope import utcnow
from stalwart.errors import StoreUnavailable, first_line
from stalwart.store.engine import ensure_head
from stalwart.store.schema import register
from stalwart.watchdog.member import LIVE_STATES

__all__ = [
    "ProgramState",
    "StateWriter",
    "forget_programs",
    "program_states",
    "stale",
    "watchdog_programs",
]

_log = logging.getLogger("stalwart.watchdog.store")

metadata = MetaData()

watchdog_programs = Table(
    "watchdog_programs",
    metadata,
    Column("host", String(255), primary_key=True),
    Column("watchdog", String(100), primary_key=True),
    Column("program", String(100), primary_key=True),
    Column("instance", Integer, primary_key=True),
    Column("state", String(32), nullable=False),
    Column("pid", Integer),
    Column("restarts", Integer, nullable=False, default=0),
    Column("last_event", String(32)),
    Column("last_reason", Text),
    Column("started_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("rss", Integer),
    Column("cpu", Float),
    Column("history", Text),  # JSON: recent [rss, cpu] samples for sparklines
)


@dataclass(slots=True)
class ProgramState:
    """One supervised instance as the watchdog last saw it."""

    host: str
    watchdog: str
    program: str
    instance: int
    state: str
    updated_at: datetime
    pid: int | None = None
    restarts: int = 0
    last_event: str | None = None
    last_reason: str | None = None
    started_at: datetime | None = None
    rss: int | None = None
    cpu: float | None = None
    history: list[tuple[int, float]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.host, self.watchdog, self.program, self.instance)

    def row(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _COLUMNS}
        data["history"] = json.dumps(self.history)
        return data


def _from_row(row: Any) -> ProgramState:
    data = dict(row._mapping)
    data["history"] = [tuple(x) for x in json.loads(data["history"] or "[]")]
    return ProgramState(**data)


def stale(forget_after: float, now: datetime | None = None) -> ColumnElement[bool]:
    """Rows of instances that ended (stopped, failed, fatal, ...) over ``forget_after``
    seconds ago. A live instance's row may go unchanged for days: it is never stale."""
    cutoff = (now or utcnow()) - timedelta(seconds=forget_after)
    return and_(
        watchdog_programs.c.state.not_in(LIVE_STATES),
        watchdog_programs.c.updated_at < cutoff,
    )


async def program_states(
    engine: AsyncEngine, forget_after: float | None = None
) -> list[ProgramState]:
    """Every row, ordered by program and instance (what ``watchdog status`` shows);
    without those :func:`stale` for ``forget_after`` seconds."""
    query = select(watchdog_programs).order_by(
        watchdog_programs.c.program, watchdog_programs.c.instance, watchdog_programs.c.host
    )
    if forget_after is not None:
        query = query.where(not_(stale(forget_after)))
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(query)
            return [_from_row(r) for r in rows]
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"cannot read watchdog_programs: {exc}; is the store up?") from exc


async def forget_programs(engine: AsyncEngine, forget_after: float) -> int:
    """Delete the rows :func:`stale` for ``forget_after`` seconds; how many."""
    async with engine.begin() as conn:
        done = await conn.execute(delete(watchdog_programs).where(stale(forget_after)))
    return int(done.rowcount)


async def _prune(engine: AsyncEngine, settings: StoreSettings) -> dict[str, int]:
    return {"watchdog_programs": await forget_programs(engine, settings.forget_after)}


register("watchdog", metadata, prune=_prune)


_COLUMNS = [f.name for f in fields(ProgramState)]


def _upsert(dialect: str) -> Any:
    """One upsert statement, run with many rows (compiled once, then cached)."""
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = make(watchdog_programs)
    keys = [c.name for c in watchdog_programs.primary_key]
    updates = {c.name: stmt.excluded[c.name] for c in watchdog_programs.c if c.name not in keys}
    return stmt.on_conflict_do_update(index_elements=keys, set_=updates)


class StateWriter:
    """Keeps the latest state per instance and upserts the changed ones every ``interval``."""

    def __init__(self, engine: AsyncEngine, host: str, watchdog: str, interval: float) -> None:
        self._engine = engine
        self._host = host
        self._watchdog = watchdog
        self._interval = interval
        self._dirty: dict[tuple[str, str, str, int], ProgramState] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = False
        self._stmt = _upsert(engine.dialect.name)

    def update(self, state: ProgramState) -> None:
        self._dirty[state.key] = state

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="watchdog-store")

    async def close(self) -> None:
        """Write what is pending (best effort, bounded), then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush(), timeout=5.0)

    async def _prepare(self) -> None:
        await ensure_head(self._engine)  # retried with the writes while the store is down
        async with self._engine.begin() as conn:  # rows of our previous run are stale
            await conn.execute(
                delete(watchdog_programs).where(
                    watchdog_programs.c.host == self._host,
                    watchdog_programs.c.watchdog == self._watchdog,
                )
            )
        self._ready = True

    async def _flush(self) -> None:
        if not self._ready:
            await self._prepare()
        if not self._dirty:
            return
        batch, self._dirty = self._dirty, {}
        try:
            async with self._engine.begin() as conn:
                await conn.execute(self._stmt, [s.row() for s in batch.values()])
        except BaseException:
            self._dirty = {**batch, **self._dirty}  # keep them, newer states win
            raise

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._flush()
                failures = 0
                delay = self._interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = jittered(failures, 2 * self._interval, 30.0)
                _log.warning("store unavailable, states kept in memory: %s", first_line(exc))
            await asyncio.sleep(delay)
