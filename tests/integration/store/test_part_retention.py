"""`stalwart store prune` keeps every part's growing tables bounded, each by its own age,
and leaves what is still needed (recent rows, claims in progress, each site's latest
scrub, the newest checkpoints, live programs)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

import stalwart.ha  # the parts register their tables and pruners when imported
import stalwart.integrity
import stalwart.service.claims  # the claims table: not loaded by stalwart.service itself
import stalwart.watchdog  # noqa: F401
from stalwart.config import StoreSettings
from stalwart.envelope import utcnow
from stalwart.store import Store
from stalwart.store.retention import prune_parts
from stalwart.store.schema import registered

_DAY = 86400.0
_SETTINGS = StoreSettings()  # claims_retention 7 days, forget_after 24 h


def _table(part: str, name: str) -> sa.Table:
    return registered()[part].tables[name]


def _rows() -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Old and recent rows of every part's growing tables (times in days ago)."""
    now, at = time.time(), utcnow()
    ago = lambda days: now - days * _DAY  # noqa: E731
    when = lambda days: at - timedelta(days=days)  # noqa: E731
    claim = {"service": "qa", "claimer": "qa@jao/1", "claimed_until": ago(30)}
    transfer = {"src": "a", "dst": "b", "outcome": "ok"}
    scrub = {"started_at": when(101)}
    return {
        ("service", "service_claims"): [
            {**claim, "message_id": "old-done", "done_at": ago(8)},
            {**claim, "message_id": "new-done", "done_at": ago(6)},
            {**claim, "message_id": "never-done", "done_at": None},
        ],
        ("ha", "ha_monitor_transitions"): [
            {
                "monitor": "db",
                "from_state": "healthy",
                "to_state": "suspect",
                "reason": "old",
                "url": "u",
                "at": ago(91),
            },
            {
                "monitor": "db",
                "from_state": "suspect",
                "to_state": "healthy",
                "reason": "new",
                "url": "u",
                "at": ago(1),
            },
        ],
        ("ha", "ha_checkpoints"): [
            {"role": role, "version": v, "token": 1, "holder": "h", "created_at": now}
            for role, versions in (("busy", range(1, 13)), ("quiet", range(1, 4)))
            for v in versions
        ],
        ("ha", "ha_members"): [
            {"role": "busy", "holder": holder, "state": "standby", "ttl": 5.0, "seen_at": seen}
            for holder, seen in (("gone", ago(2)), ("here", now))
        ],
        ("integrity", "integrity_transfers"): [
            {**transfer, "finished_at": when(91)},
            {**transfer, "finished_at": when(1)},
        ],
        ("integrity", "integrity_repairs"): [
            {"path": "p", "method": "parity", "blocks": "[1]", "at": when(days)} for days in (91, 1)
        ],
        ("integrity", "integrity_scrubs"): [
            {**scrub, "id": 1, "site": "eu", "state": "done", "finished_at": when(100)},
            {**scrub, "id": 2, "site": "na", "state": "done", "finished_at": when(100)},
            {**scrub, "id": 3, "site": "eu", "state": "done", "finished_at": when(99)},
            {**scrub, "id": 4, "site": "eu", "state": "interrupted", "finished_at": when(98)},
        ],
        ("watchdog", "watchdog_programs"): [
            {
                "host": "h",
                "watchdog": "w",
                "program": program,
                "instance": 0,
                "state": state,
                "updated_at": when(3),
            }
            for program, state in (("ended", "stopped"), ("steady", "running"))
        ],
    }


async def _fill(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for (part, name), rows in _rows().items():
            await conn.execute(_table(part, name).insert(), rows)


async def _left(engine: AsyncEngine, part: str, name: str, column: str) -> list[Any]:
    table = _table(part, name)
    async with engine.connect() as conn:
        return list(await conn.scalars(sa.select(table.c[column]).order_by(table.c[column])))


async def test_every_part_prunes_its_old_rows_and_keeps_the_rest(store: Store) -> None:
    # Given every part's tables with rows past and within their retention
    await _fill(store.engine)
    # When the parts' tables are pruned
    deleted = await prune_parts(store, _SETTINGS)
    # Then each old row went, and nothing else
    assert deleted == {
        "service_claims": 1,
        "ha_monitor_transitions": 1,
        "ha_checkpoints": 2,
        "ha_members": 1,
        "integrity_transfers": 1,
        "integrity_repairs": 1,
        "integrity_scrubs": 1,
        "watchdog_programs": 1,
    }
    engine = store.engine
    claims = await _left(engine, "service", "service_claims", "message_id")
    assert claims == ["never-done", "new-done"]
    assert await _left(engine, "ha", "ha_monitor_transitions", "reason") == ["new"]
    checkpoints = _table("ha", "ha_checkpoints")
    async with engine.connect() as conn:
        kept = (await conn.execute(sa.select(checkpoints.c.role, checkpoints.c.version))).all()
    assert sorted(kept) == [("busy", v) for v in range(3, 13)] + [("quiet", v) for v in (1, 2, 3)]
    assert await _left(engine, "ha", "ha_members", "holder") == ["here"]
    # (each site's latest scrub and an unfinished one stay, however old)
    assert await _left(engine, "integrity", "integrity_scrubs", "id") == [2, 3, 4]
    assert len(await _left(engine, "integrity", "integrity_transfers", "id")) == 1
    assert len(await _left(engine, "integrity", "integrity_repairs", "id")) == 1
    assert await _left(engine, "watchdog", "watchdog_programs", "program") == ["steady"]
    # And pruning again deletes nothing
    assert set((await prune_parts(store, _SETTINGS)).values()) == {0}


async def _old_rows(url: str) -> None:
    async with await Store.open(url) as store:
        await _fill(store.engine)


def test_the_prune_command_prunes_the_parts_in_a_fresh_process(tmp_path: Path) -> None:
    # Given a store with old rows in the parts' tables
    url = f"sqlite:///{tmp_path}/store.db"
    asyncio.run(_old_rows(url))
    config = tmp_path / "stalwart.toml"
    config.write_text(f'[store]\nurl = "{url}"\n')
    # When `stalwart store prune` runs as its own process (no part imported beforehand)
    done = subprocess.run(
        [sys.executable, "-m", "stalwart", "store", "prune", "-o", "90d", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then it pruned every part's tables and said so
    assert done.returncode == 0, done.stderr
    assert "1 program(s)" in done.stdout
    for said in ("1 service_claims", "2 ha_checkpoints", "1 integrity_scrubs"):
        assert said in done.stdout, done.stdout
