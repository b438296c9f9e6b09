"""The live feed over real HTTP: SSE batches from the bus, filtered, ended on shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
from dashboard_system import free_port, server_settings

from stalwart.bus import open_transport
from stalwart.dashboard import serve_dashboard
from stalwart.envelope import Envelope


async def test_live_stream_pushes_matching_messages_and_ends_on_stop(tmp_path: Path) -> None:
    # Given the dashboard served for real on the embedded bus
    settings = server_settings(tmp_path, live_batch_interval=0.05)
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    bind = f"127.0.0.1:{free_port()}"
    serving = asyncio.create_task(serve_dashboard(settings, bind, stop, on_ready=ready.set_result))
    url = await asyncio.wait_for(ready, 20)
    transport = open_transport(settings.bus.url)
    await transport.start()
    received: list[dict[str, object]] = []
    try:
        async with (
            httpx.AsyncClient(timeout=10) as client,
            client.stream("GET", f"{url}live", params={"pattern": "work.*"}) as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            assert await anext(lines) == "event: hello"

            async def publish_until_seen() -> None:
                # The hub subscribes to the bus as it starts: publish until it hears.
                deadline = time.monotonic() + 15
                while not received and time.monotonic() < deadline:
                    await transport.publish(
                        [Envelope.new("work.a", {"n": 1}), Envelope.new("other.b", {"n": 2})]
                    )
                    await asyncio.sleep(0.2)

            publisher = asyncio.create_task(publish_until_seen())
            # When messages flow, Then matching ones arrive in batches, others never
            event = None
            async with asyncio.timeout(20):
                async for line in lines:
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: ") and event == "messages":
                        received.extend(json.loads(line.removeprefix("data: ")))
                        break
            await publisher
            assert received and {m["topic"] for m in received} == {"work.a"}
            # When the server is told to stop, Then the open stream ends and it stops
            stop.set()
            async with asyncio.timeout(15):
                async for _ in lines:
                    pass
        await asyncio.wait_for(serving, 15)
    finally:
        stop.set()
        await transport.close()
        if not serving.done():
            serving.cancel()
