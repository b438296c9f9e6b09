"""Monitor states and transitions in the store, so every process sees them.

A monitor starts even while the store is down (it may be the database it
watches), so it brings the store's schema to the newest revision on its
first successful write or read, not when opened.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.ha._schema import monitor_transitions, monitors
from stalwart.store.engine import db_now, ensure_head, upsert

__all__ = ["load_monitor", "save_transition"]


async def load_monitor(engine: AsyncEngine, name: str) -> dict[str, Any] | None:
    """The stored row of monitor ``name`` (state, active_url, ...), or None."""
    await ensure_head(engine)
    async with engine.connect() as conn:
        row = (await conn.execute(select(monitors).where(monitors.c.name == name))).first()
    return None if row is None else dict(row._mapping)


async def save_transition(
    engine: AsyncEngine,
    *,
    name: str,
    kind: str,
    from_state: str,
    to_state: str,
    reason: str,
    url: str,
    urls: list[str],
) -> None:
    """Record one transition and the monitor's new state and active URL atomically."""
    await ensure_head(engine)
    async with engine.begin() as conn:
        now = db_now(conn)
        await conn.execute(
            insert(monitor_transitions).values(
                monitor=name,
                from_state=from_state,
                to_state=to_state,
                reason=reason,
                url=url,
                at=now,
            )
        )
        values = {
            "kind": kind,
            "state": to_state,
            "active_url": url,
            "urls": urls,
            "updated_at": now,
            "detail": reason,
        }
        values["since"] = now
        await upsert(conn, monitors, {"name": name, **values}, ["name"], values)
