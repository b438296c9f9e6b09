"""Services run as real processes by the multi-process tests.

Each handled message appends one line ``<message id> <pid> <attempt>`` to the
file named by $EFFECTS (O_APPEND: one write per line, atomic), so a test can
count effects per message and per process. $STARTED, when set, gets a line
as a handler starts.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from stalwart.service import Context, Service

LEASE = float(os.environ.get("LEASE", "2"))


def _append(var: str, ctx: Context) -> None:
    path = os.environ.get(var)
    if path:
        line = f"{ctx.envelope.id} {os.getpid()} {ctx.envelope.attempt}\n".encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _make(name: str, idempotent: bool) -> Service:
    service = Service(name, lease=LEASE, heartbeat_interval=0.5, concurrency=8, grace=2.0)

    @service.handler("work.item", idempotent=idempotent)
    async def work(ctx: Context, body: Any) -> None:
        _append("STARTED", ctx)
        await asyncio.sleep(float(body.get("sleep", 0)))
        _append("EFFECTS", ctx)

    return service


worker = _make("worker", idempotent=True)
audit = _make("audit", idempotent=False)
