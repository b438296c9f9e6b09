"""A minimal HA service for ``bench_failover``: it only has to become active."""

from __future__ import annotations

from typing import Any

from stalwart.service import Context, Service

svc = Service("bench-failover", concurrency=1, heartbeat_interval=5.0, grace=0.5)


@svc.handler("bench.failover.tick")
async def tick(ctx: Context, body: Any) -> None:
    return None
