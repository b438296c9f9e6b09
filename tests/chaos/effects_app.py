"""The service the fault suite runs in consumer processes (``stalwart run effects_app:svc``).

Its idempotent handler writes one row per run into ``effects`` through
``ctx.transaction()``, the store transaction in which the runtime also
completes the message's claim. ``effects`` has no unique key on the message
id, so a second run of one message shows as a second row: duplicates are
``rows - distinct ids``.

Environment: ``CHAOS_SERVICE`` (the service name), ``CHAOS_DELAY`` (seconds
each run takes before its effect, default 0.002), ``CHAOS_CONCURRENCY``
(handlers at once per process, default 8).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from sqlalchemy import text

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


@svc.handler(TOPIC, idempotent=True)
async def apply(ctx: Context, body: Any) -> None:
    await asyncio.sleep(_DELAY)
    async with ctx.transaction() as tx:
        await tx.execute(
            _INSERT, {"id": ctx.envelope.id, "service": ctx.service, "pid": os.getpid()}
        )
