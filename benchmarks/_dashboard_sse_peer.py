"""The SSE peer of ``bench_dashboard``: the textbook live feed.

One bus consumer; for every message, one ``put`` into every viewer's
unbounded queue and one SSE event per message and viewer, served by
sse-starlette. This is how a live feed is usually first written; the
dashboard batches per tick and bounds each viewer's queue instead.

Run by the benchmark: ``python -m benchmarks._dashboard_sse_peer BUS_URL PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI
from sse_starlette.sse import EventSourceResponse

from stalwart.bus import QueueSpec, open_transport

__all__ = ["main"]


def build(bus_url: str) -> FastAPI:
    viewers: set[asyncio.Queue[str]] = set()
    transport = open_transport(bus_url)

    acks: set[asyncio.Task[None]] = set()

    async def consume() -> None:
        name = f"sse-peer-{uuid.uuid4().hex[:8]}"
        await transport.declare(QueueSpec(name=name, patterns=("#",), ephemeral=True))
        async for delivery in transport.consume(name, prefetch=1024):
            env = delivery.envelope
            if env is not None:
                data = json.dumps(
                    {
                        "id": env.id,
                        "topic": env.topic,
                        "kind": env.kind,
                        "sender": env.sender,
                        "created_at": env.created_at.isoformat(),
                    }
                )
                for queue in viewers:
                    queue.put_nowait(data)
            # Settle concurrently so that the feed does not wait on each commit.
            ack = asyncio.create_task(delivery.ack())
            acks.add(ack)
            ack.add_done_callback(acks.discard)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await transport.start()
        task = asyncio.create_task(consume())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.gather(*acks, return_exceptions=True)
        await transport.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/live")
    async def live() -> EventSourceResponse:
        queue: asyncio.Queue[str] = asyncio.Queue()

        async def events() -> AsyncIterator[dict[str, str]]:
            viewers.add(queue)
            try:
                yield {"event": "hello", "data": "{}"}
                while True:
                    yield {"event": "message", "data": await queue.get()}
            finally:
                viewers.discard(queue)

        return EventSourceResponse(events())

    return app


def main() -> None:
    bus_url, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(build(bus_url), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
