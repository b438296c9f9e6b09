"""A tiny HA service for the failover tests, run in child processes.

Each ``ha.app.item`` message has one effect: a row in ``ha_app_effects``,
written in the same fenced transaction as the checkpoint that counts it. So
the latest checkpoint's count equals the number of effects, a deposed
replica cannot write either, and a redelivered message is not applied twice.
Markers in ``HA_APP_DIR`` let the tests see what each process did.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from stalwart.errors import FencedOut
from stalwart.ha import checkpoint, fenced, restored_state
from stalwart.service import Context, Service

svc = Service(
    os.environ.get("HA_APP_NAME", "ha-app"),
    concurrency=1,
    heartbeat_interval=5.0,
    lease=float(os.environ.get("HA_APP_DELIVERY_LEASE", "2.0")),
    grace=0.5,
)
_DIR = Path(os.environ.get("HA_APP_DIR", "."))
_DELAY = float(os.environ.get("HA_APP_DELAY", "0.02"))


class Item(BaseModel):
    n: int


def _mark(name: str) -> None:
    (_DIR / f"{name}-{os.getpid()}").touch()


_mark("imported")


async def _create(conn: AsyncConnection) -> None:
    await conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS ha_app_effects "
            "(id VARCHAR(64) NOT NULL, n INTEGER NOT NULL, pid INTEGER NOT NULL)"
        )
    )


@svc.handler("ha.app.item", body=Item, idempotent=True)
async def on_item(ctx: Context, body: Item) -> None:
    _mark(f"started-{body.n}")
    await asyncio.sleep(_DELAY)
    message_id = ctx.envelope.id

    async def seen(conn: AsyncConnection) -> bool:
        await _create(conn)
        query = text("SELECT 1 FROM ha_app_effects WHERE id = :id")
        return (await conn.execute(query, {"id": message_id})).first() is not None

    async def effect(conn: AsyncConnection) -> Any:
        await conn.execute(
            text("INSERT INTO ha_app_effects (id, n, pid) VALUES (:id, :n, :pid)"),
            {"id": message_id, "n": body.n, "pid": os.getpid()},
        )

    try:
        if await fenced(seen):
            return
        state = dict(restored_state() or {"count": 0})
        state["count"] += 1
        await checkpoint(state, effect=effect)
    except FencedOut:
        _mark("fenced")
        raise
    _mark(f"done-{body.n}")
