"""The service the fault suite runs in consumer processes (``stalwart run effects_app:svc``).

Its idempotent handler writes one row per run into ``effects`` through
``ctx.transaction()``, the store transaction in which the runtime also
completes the message's claim. ``effects`` has no unique key on the message
id, so a second run of one message shows as a second row: duplicates are
``rows - distinct ids``.

Environment: ``CHAOS_SERVICE`` (the service name), ``CHAOS_DELAY`` (seconds
each run takes before its effect, default 0.002).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from stalwart.service import Context, Service

TOPIC = "chaos.item"
EFFECTS_DDL = (
    "CREATE TABLE IF NOT EXISTS effects "
    "(message_id VARCHAR(200) NOT NULL, service VARCHAR(200) NOT NULL, pid INTEGER NOT NULL)"
)
_INSERT = text("INSERT INTO effects (message_id, service, pid) VALUES (:id, :service, :pid)")
_DELAY = float(os.environ.get("CHAOS_DELAY", "0.002"))

svc = Service(
    os.environ.get("CHAOS_SERVICE", "chaos-effects"),
    concurrency=int(os.environ.get("CHAOS_CONCURRENCY", "8")),
    heartbeat_interval=1.0,
    grace=1.0,
)
_own_engine: AsyncEngine | None = None


def async_url(url: str) -> str:
    """A store URL with the async driver SQLAlchemy needs."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


@contextlib.asynccontextmanager
async def _effect_transaction(ctx: Context) -> AsyncIterator[AsyncConnection]:
    """``ctx.transaction()``; on a runtime without it, a transaction of its own.

    The fallback is how a handler writes its effect on such a runtime (the
    effect commits apart from the processed-id record), so the suite measures
    what that runtime gives.
    """
    begin = getattr(ctx, "transaction", None)
    if begin is not None:
        async with begin() as tx:
            yield tx
        return
    global _own_engine
    if _own_engine is None:
        _own_engine = create_async_engine(async_url(ctx.settings.store.url))
    async with _own_engine.begin() as tx:
        yield tx


@svc.handler(f"{TOPIC}", idempotent=True)
async def apply(ctx: Context, body: Any) -> None:
    await asyncio.sleep(_DELAY)
    async with _effect_transaction(ctx) as tx:
        await tx.execute(
            _INSERT, {"id": ctx.envelope.id, "service": ctx.service, "pid": os.getpid()}
        )
